"""podman and Docker, driving an OCI runtime the way their users start containers: each
call is the engine's own CLI, with vmvc-runtime or runc (the reference) as the runtime.

podman runs with storage of its own under the test's temporary directory and a
containers.conf of its own (no network by default: the host's network stays as it is;
the ulimits this sandbox allows). Docker is the daemon `make setup` started, vmvc-runtime
registered in /etc/docker/daemon.json as the runtime "vmvc"; the image and every container
the tests make there are removed afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

VMVC_RUNTIME = str(Path(sys.executable).parent / "vmvc-runtime")
PODMAN, DOCKER = "/usr/bin/podman", "/usr/bin/docker"  # Debian's clients, whatever PATH says
IMAGE = "localhost/vmvctest-tiny:latest"
CONTAINERS_CONF = """\
[containers]
netns = "none"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
"""


class Engine:
    """One engine with one runtime: ``run`` and the other verbs, as its CLI takes them."""

    def __init__(self, name: str, runtime: str, prefix: list[str], run_flags: list[str],
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.runtime = runtime  # "vmvc-runtime" or "runc"
        self.prefix = prefix
        self.run_flags = run_flags
        self.env = {**os.environ, **(env or {})}

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The engine's CLI; output through files (a detached container's shim keeps pipes
        open)."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run([*self.prefix, *args], stdout=out, stderr=err,
                                  stdin=subprocess.DEVNULL, env=self.env, timeout=timeout,
                                  check=False)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(),
                                               err.read())

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``run`` with this engine's runtime: *args* are the run's flags, image, command."""
        return self("run", *self.run_flags, *args, timeout=timeout)

    def __repr__(self) -> str:
        return f"{self.name}+{self.runtime}"


def podman(root: Path, runtime: str) -> Engine:
    conf = root / "containers.conf"
    if not conf.exists():
        root.mkdir(parents=True, exist_ok=True)
        conf.write_text(CONTAINERS_CONF)
    binary = VMVC_RUNTIME if runtime == "vmvc-runtime" else "/usr/sbin/runc"
    return Engine("podman", runtime,
                  [PODMAN, "--root", str(root / "storage"), "--runroot", str(root / "run"),
                   "--runtime", binary], [], {"CONTAINERS_CONF": str(conf)})


def docker(runtime: str) -> Engine:
    return Engine("docker", runtime, [DOCKER],
                  [f"--runtime={'vmvc' if runtime == 'vmvc-runtime' else 'runc'}"])


def docker_answers() -> str | None:
    """Why Docker cannot be used here, or None."""
    if not os.path.exists(DOCKER):
        return f"{DOCKER} is missing (make setup installs docker.io)"
    info = subprocess.run([DOCKER, "info", "--format", "{{json .Runtimes}}"],
                          capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return f"dockerd does not answer (make setup starts it): {info.stderr.strip()}"
    if '"vmvc"' not in info.stdout:
        return "dockerd has no runtime named vmvc (make setup registers it)"
    return None


def import_image(engine: Engine, layer: Path) -> None:
    """The suite's tiny image (busybox) from its one layer, as ``import`` takes a root."""
    proc = engine("import", str(layer), IMAGE, timeout=120)
    assert proc.returncode == 0, proc.stderr
