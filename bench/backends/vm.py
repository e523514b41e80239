"""``vm``: a VM from the same image through the libvirt driver (vmdriver), one boot per
instance; commands run through the guest agent. Under TCG every figure is emulated and is
labelled so (see :attr:`VmBackend.label`)."""

from __future__ import annotations

import os

from bench.backends.base import (
    IDLE,
    Backend,
    ExecOutcome,
    Instance,
    MemoryReading,
    read_memory_of,
    uninterruptible,
)
from bench.backends.oci_bundle import cpu_list
from bench.errors import VmvcError
from runtime import network as runtime_network
from vmdriver.errors import VmError
from vmdriver.vm import PHASE_EVENTS, PHASES, Nic, Vm, VmConfig, boot


class VmInstance(Instance):
    def __init__(self, vm: Vm) -> None:
        self.vm = vm
        self.stopped = False
        self.address = vm.config.nic.address if vm.config.nic else None

    @property
    def phases(self) -> dict[str, float | None]:
        return self.vm.phases.as_dict()

    def exec(self, argv: list[str], timeout: float) -> ExecOutcome:
        try:
            result = self.vm.exec(argv, timeout)
        except VmError as exc:
            raise VmvcError(str(exc)) from exc
        if result.timed_out:
            raise VmvcError(f"vm: {' '.join(argv)} still running after {timeout:.0f} s")
        return ExecOutcome(result.exit_code, result.stdout, result.stderr, result.seconds)

    def memory(self) -> MemoryReading:
        try:
            pid = self.vm.qemu_pid()
        except VmError as exc:
            raise VmvcError(str(exc)) from exc
        return read_memory_of(pid, f"vm {self.vm.name}")

    def stop(self) -> None:
        with uninterruptible():
            if not self.stopped:
                self.stopped = True
                try:
                    self.vm.close()
                except VmError as exc:
                    raise VmvcError(str(exc)) from exc
                finally:
                    if self.address is not None:  # the tap went with the VM
                        runtime_network.release_address(self.address)


QEMU_OWN_MIB = 64  # QEMU's own memory beside the guest's RAM: devices, libraries, heap


class VmBackend(Backend):
    memory_cgroup = ("the one libvirt puts the VM's QEMU in: guest RAM QEMU touched, its own "
                     "code and device state; libvirtd and virtlogd, shared by all VMs, are "
                     "outside it")
    name = "vm"
    kind = "vm"
    bridge = True  # a virtio-net NIC on vmvc0, its address set by the guest init
    ready = False  # the guest agent returns a command's output only once it exits
    expensive = True
    boot_phases = True
    phase_events = PHASE_EVENTS
    startup_phase = "first_command_done"
    needs_full_image = True  # the guest agent is in the full image only
    startup_definition = ("libvirt createXML requested → the guest agent reports /bin/true "
                          "exited (vmdriver phase first_command_done); destroy untimed")
    ready_definition = ""  # the guest agent returns output only once a command exits

    def config(self, nic: Nic | None = None, cpus: set[int] | None = None) -> VmConfig:
        c = self.context
        return VmConfig(kernel=c.kernel, initramfs=c.initramfs, disk=c.disk,
                        vcpus=c.vm_vcpus, memory_mib=c.vm_memory_mib, accelerator=c.accelerator,
                        nic=nic, cpuset=cpu_list(cpus) if cpus else "")

    def memory_bound_bytes(self) -> int | None:
        """The guest's RAM (it may touch all of it) and QEMU's own share beside it. Under TCG
        QEMU also reserves a translation cache (up to min(1 GiB, host RAM / 8)) that fills
        only as guest code runs; an idle guest fills little of it, so it is not counted:
        this is an estimate for idle instances, not a hard bound."""
        return (self.context.vm_memory_mib + QEMU_OWN_MIB) << 20

    def boot(self, nic: Nic | None = None, cpus: set[int] | None = None) -> VmInstance:
        try:
            return VmInstance(boot(self.config(nic, cpus)))
        except VmError as exc:
            raise VmvcError(str(exc)) from exc

    def start(self, argv: list[str] = IDLE, network: str = "none",
              cpus: set[int] | None = None) -> Instance:
        if network not in ("none", "bridge"):
            raise VmvcError(f"{self.name}: network {network!r}: choose none or bridge")
        if argv != IDLE:
            raise VmvcError(f"{self.name}: an instance boots idle; run commands through exec")
        if network == "none":
            return self.boot(cpus=cpus)
        with uninterruptible():  # an address leased is an address given back
            # held while this process lives: a killed harness's lease is pruned by cleanup
            address = runtime_network.lease_address("vm of the harness", f"/proc/{os.getpid()}")
            try:
                return self.boot(Nic(runtime_network.BRIDGE, address,
                                     runtime_network.SUBNET.prefixlen), cpus)
            except BaseException:
                runtime_network.release_address(address)
                raise

    def time_to_exit(self, argv: list[str]) -> float:
        if argv != ["true"]:
            raise VmvcError("vm: startup is measured to /bin/true through the guest agent")
        with self.boot() as instance:
            value = instance.phases["first_command_done"]
        assert value is not None
        return value

    def time_to_ready(self, argv: list[str]) -> float:
        raise VmvcError(f"{self.name}: not measured: the guest agent returns a command's "
                        "output only once it exits, so a first line cannot be timed")



__all__ = ["PHASES", "VmBackend", "VmInstance"]
