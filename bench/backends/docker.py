"""``docker``: Docker Engine (Debian's docker.io: dockerd → containerd →
containerd-shim-runc-v2 → runc), driven with the ``docker`` CLI as its users drive it.

`make setup` starts dockerd without a bridge or iptables rules (the host's network stays as
it is), so its instances have no network of their own but ``lo``: the services, which need
the host to reach the instance, skip docker (Docker cannot join a namespace by path, as
runc, crun and podman do on the suite's bridge).
"""

from __future__ import annotations

from bench.backends.engine import EngineBackend


class DockerBackend(EngineBackend):
    name = "docker"
    binary = "/usr/bin/docker"  # Debian's client, whatever comes first on PATH
    monitor = "containerd-shim-runc-v2"
    daemons = ("dockerd", "containerd")
