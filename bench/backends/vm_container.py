"""``vm-container``: the VM that holds the containers (the development setup of a Linux VM
running the containers, and Kata's model): the VM boots the image as ``vm`` does, and every
command runs in a container *inside* the guest, made by the guest's own crun (Debian's, in
the image; not the suite's runtime: the image holds no Python) through the guest agent.

The container's config is the one the host's container backends run (oci_bundle), composed
on the host and handed to the guest on the agent command's stdin; its root is an overlay of
the guest's root with its upper dir in the guest's /run (tmpfs), so it writes nothing into
the guest's root. The guest loads overlayfs at boot only for this backend (``vmvc.load``).
With a NIC the container shares the guest's network namespace: services in it listen at
the VM's address; without one it has its own, as the other container backends do.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import ClassVar

from bench.backends.base import IDLE, ExecOutcome
from bench.backends.oci_bundle import container_config, new_id
from bench.backends.vm import VmBackend, VmInstance
from bench.errors import VmvcError
from vmdriver.agent import ExecResult
from vmdriver.errors import VmError
from vmdriver.vm import PHASE_EVENTS, Nic, Vm, VmConfig

RUNTIME = "crun"  # the guest's (Debian's crun, in the full image)
CONTAINER_PHASE = "container_started"
CONTAINER_EVENT = ("create requested → the guest agent reports `crun run --detach` of the "
                   "idle container exited (bundle dir, overlay root and config.json made in "
                   "the same guest command; the container's process started)")
START_TIMEOUT = 120.0
BUNDLES = "/run/vmvc-containers"  # in the guest: its /run is a tmpfs

# $1: the container id; stdin: config.json. The overlay's lower dir is the guest's root
# file system alone (its tmpfs and API mounts are not part of it).
PREPARE = f"""set -e
bundle={BUNDLES}/$1
mkdir -p "$bundle/upper" "$bundle/work" "$bundle/rootfs"
busybox mount -t overlay overlay \\
  -o "lowerdir=/,upperdir=$bundle/upper,workdir=$bundle/work" "$bundle/rootfs"
cat > "$bundle/config.json"
"""
# detached, its stdio away from the agent's pipes (the agent reports an exit only once
# they close); crun's own message comes back on failure
RUN_DETACHED = PREPARE + f"""{RUNTIME} run --detach --bundle "$bundle" "$1" \\
  < /dev/null > "$bundle/run.log" 2>&1 || {{ cat "$bundle/run.log" >&2; exit 125; }}
"""
RUN_FOREGROUND = PREPARE + f'exec {RUNTIME} run --bundle "$bundle" "$1"\n'


class VmContainerInstance(VmInstance):
    """A booted VM with one idle container in it; commands run in the container. Its memory
    is QEMU's, as vm's: the guest with its crun and container inside."""

    def __init__(self, vm: Vm, container_id: str, started: float) -> None:
        super().__init__(vm)
        self.container_id = container_id
        self.container_started = started

    @property
    def phases(self) -> dict[str, float | None]:
        return {**self.vm.phases.as_dict(), CONTAINER_PHASE: self.container_started}

    def exec(self, argv: list[str], timeout: float) -> ExecOutcome:
        return super().exec([RUNTIME, "exec", self.container_id, *argv], timeout)


class VmContainerBackend(VmBackend):
    name = "vm-container"
    phase_events: ClassVar[dict[str, str]] = {**PHASE_EVENTS, CONTAINER_PHASE: CONTAINER_EVENT}
    startup_phase = CONTAINER_PHASE
    bridge = True  # the container shares the guest's network namespace: the VM's address
    # a second series of boots: in the quick suite only its startup boots (which give its
    # memory too) and the audit's; its workloads in the full suite
    quick_metrics = ("startup", "memory", "isolation")
    startup_definition = ("libvirt createXML requested → the guest booted (vm's phases, to "
                          "first_command_done), then the guest agent reports `crun run "
                          "--detach` of the idle container in the guest exited (phase "
                          f"{CONTAINER_PHASE}); destroy untimed")

    def config(self, nic: Nic | None = None, cpus: set[int] | None = None) -> VmConfig:
        config = super().config(nic, cpus)
        config.cmdline += " vmvc.load=overlay"
        return config

    def boot(self, nic: Nic | None = None, cpus: set[int] | None = None) -> VmInstance:
        """The VM booted, then its idle container started (both inside *start*'s time)."""
        vm = super().boot(nic, cpus).vm
        try:
            container_id = new_id()
            result = _run_in_guest(vm, RUN_DETACHED, container_id,
                                   self._config(IDLE, container_id, nic is not None))
            started = time.monotonic() - vm.created
            if result.exit_code != 0:
                raise VmvcError(f"{self.name}: starting the container in the guest exited "
                                f"{result.exit_code}: {_last_line(result.stderr)}")
            return VmContainerInstance(vm, container_id, started)
        except BaseException:  # the VM goes; an address leased is given back by start()
            with contextlib.suppress(VmError):
                vm.close()
            raise

    def time_to_exit(self, argv: list[str]) -> float:
        """Create requested → `crun run` of *argv* in a fresh container in the freshly
        booted guest reported exited (the VM destroyed afterwards, untimed)."""
        with super().boot() as instance:
            container_id = new_id()
            result = _run_in_guest(instance.vm, RUN_FOREGROUND, container_id,
                                   self._config(argv, container_id, False))
            seconds = time.monotonic() - instance.vm.created
        if result.exit_code != 0:
            raise VmvcError(f"{self.name}: {' '.join(argv)} exited {result.exit_code}: "
                            f"{_last_line(result.stderr)}")
        return seconds

    def _config(self, argv: list[str], container_id: str, guest_network: bool) -> bytes:
        config = container_config(argv, container_id, self.context.limits)
        if guest_network:  # no namespace of its own: it is on eth0, at the VM's address
            namespaces = config["linux"]["namespaces"]
            config["linux"]["namespaces"] = [n for n in namespaces if n["type"] != "network"]
        return json.dumps(config).encode()


def _run_in_guest(vm: Vm, script: str, container_id: str, config: bytes) -> ExecResult:
    """*script* in the guest for *container_id*, its *config* on the script's stdin."""
    try:
        result = vm.exec(["/bin/sh", "-c", script, "sh", container_id], START_TIMEOUT,
                         stdin=config)
    except VmError as exc:
        raise VmvcError(str(exc)) from exc
    if result.timed_out:
        raise VmvcError(f"vm-container: {RUNTIME} in the guest still running after "
                        f"{START_TIMEOUT:.0f} s")
    return result


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:200] if lines else "no message"
