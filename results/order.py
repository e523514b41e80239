"""The order backends and VM boot phases are shown in, as data: results/ imports neither
bench/ (where the backend registry lives) nor vmdriver/ (which measures the phases); tests
check that those agree with these."""

from __future__ import annotations

from collections.abc import Iterable

# along the spectrum: the bare host first (the baseline; bare-veth, its variant on the
# bridge, beside it), then runtimes from ours to the peers, the engines over them, the
# sandbox (a kernel in user space), the system container (lxc), the VM, the VM that holds
# the containers last
BACKEND_ORDER: tuple[str, ...] = ("bare", "bare-veth", "builtin", "builtin-cli", "runc", "crun",
                                  "docker", "podman", "gvisor", "lxc", "vm", "vm-container")

# a VM's boot, each phase measured from the create request (vmdriver.vm.PHASES), then what a
# backend does in the booted guest (vm-container: its container started)
BOOT_PHASES: tuple[str, ...] = ("qemu_started", "kernel_started", "init_started",
                                "agent_connected", "first_command_done", "container_started")


def backends_in_order(present: Iterable[str]) -> list[str]:
    """*present* in the report's order; backends it does not know last, by name."""
    found = set(present)
    return [b for b in BACKEND_ORDER if b in found] + sorted(found - set(BACKEND_ORDER))
