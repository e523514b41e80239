"""``podman``: Debian's podman 4.3 (conmon → crun, daemonless), driven with the ``podman``
CLI as its users drive it. On the suite's bridge it joins the namespace the harness makes,
by path (``--network ns:/run/netns/vmvc-<id>``), as runc and crun do."""

from __future__ import annotations

from bench.backends import netns
from bench.backends.engine import NAME_PREFIX, EngineBackend, ulimit_flags
from bench.errors import VmvcError


class PodmanBackend(EngineBackend):
    name = "podman"
    binary = "/usr/bin/podman"
    monitor = "conmon"
    bridge = True

    def __init__(self, context) -> None:
        super().__init__(context)
        self._netns: dict[str, netns.BridgedNetns] = {}

    def run_flags(self) -> list[str]:
        return ulimit_flags()

    def rm_command(self, name: str) -> list[str]:
        return [*self.command(), "rm", "--force", "--time", "0", name]

    def network_flags(self, network: str, name: str) -> tuple[list[str], str | None]:
        if network == "none":
            return ["--network", "none"], None
        if network != "bridge":
            raise VmvcError(f"podman: network {network!r}: choose none or bridge")
        made = netns.make(name.removeprefix(NAME_PREFIX))
        self._netns[name] = made
        return ["--network", f"ns:{made.path}"], made.address

    def release_network(self, name: str) -> None:
        made = self._netns.pop(name, None)
        if made is not None:
            netns.remove(made)
