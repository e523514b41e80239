"""The vm-container backend against the real libvirtd, QEMU and the guest's crun: each
command runs in a container inside the guest (not in the guest itself), its start shows
the VM's boot phases and the container's, its memory is QEMU's, and nothing outlives it.
Two boots in all (an idle instance, a startup); its bridge is tested with the others'
(test_bridge_network.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from bench.backends import BackendContext, make_backend
from bench.backends.vm_container import (
    CONTAINER_PHASE,
    VmContainerBackend,
    VmContainerInstance,
)
from bench.errors import VmvcError
from image.build import ImageArtifacts
from paths import BENCH_WORKDIR, VM_WORKDIR
from vmdriver.vm import NAME_PREFIX, PHASES

pytestmark = pytest.mark.slow  # every test boots a VM

NAMESPACES = "readlink /proc/self/ns/pid /proc/self/ns/mnt /proc/self/ns/net /proc/self/ns/uts"


def vmvc_domains() -> set[str]:
    conn = libvirt.open("qemu:///system")
    try:
        return {d.name() for d in conn.listAllDomains() if d.name().startswith(NAME_PREFIX)}
    finally:
        conn.close()


def context_of(image: ImageArtifacts) -> BackendContext:
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    return BackendContext(image.oci_layout, image.disk, image.kernel, image.initramfs,
                          BENCH_WORKDIR)


def gone(name: str, qemu_pid: int) -> bool:
    return name not in vmvc_domains() and not (VM_WORKDIR / name).exists() \
        and not Path(f"/proc/{qemu_pid}").exists()


@pytest.fixture(scope="module")
def instance(full_image: ImageArtifacts) -> Iterator[VmContainerInstance]:
    started = make_backend("vm-container", context_of(full_image)).start()
    assert isinstance(started, VmContainerInstance)
    name, pid = started.vm.name, started.vm.qemu_pid()
    with started:
        yield started
    assert gone(name, pid)


def in_guest(instance: VmContainerInstance, script: str) -> str:
    """*script* in the guest itself, beside the container (the agent's own context)."""
    result = instance.vm.exec(["/bin/sh", "-c", script], 60)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_commands_run_in_a_container_inside_the_guest(instance: VmContainerInstance) -> None:
    inside = instance.exec(["/bin/sh", "-c", f"cat /proc/1/cmdline; echo; {NAMESPACES}"], 60)
    assert inside.exit_code == 0, inside.stderr
    first, *namespaces = inside.stdout.splitlines()
    assert first == "sleep\0" + "1000000\0"  # its PID 1 is the idle process, not the init
    guest = in_guest(instance, f"cat /proc/1/cmdline; echo; {NAMESPACES}").splitlines()
    assert "vmvc-init" in guest[0]
    for own, guests in zip(namespaces, guest[1:], strict=True):  # pid, mnt, net, uts
        assert own != guests, (own, guests)
    uname = instance.exec(["uname", "-r"], 60).stdout  # the guest's kernel, not the host's
    assert uname == in_guest(instance, "uname -r") and uname.strip() != Path(
        "/proc/sys/kernel/osrelease").read_text().strip()


def test_the_container_writes_nothing_into_the_guests_root(
        instance: VmContainerInstance) -> None:
    wrote = instance.exec(["/bin/sh", "-c", "echo x > /etc/vmvc-was-here"], 60)
    assert wrote.exit_code == 0, wrote.stderr
    assert instance.exec(["cat", "/etc/vmvc-was-here"], 60).stdout == "x\n"
    assert in_guest(instance, "test -e /etc/vmvc-was-here && echo there || echo absent") \
        == "absent\n"
    assert "overlay" in in_guest(instance, "cat /proc/filesystems")  # loaded on request


def test_exit_code_and_output_come_back_apart(instance: VmContainerInstance) -> None:
    failing = instance.exec(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], 60)
    assert (failing.exit_code, failing.stdout, failing.stderr) == (3, "out\n", "err\n")
    assert failing.seconds > 0


def test_start_shows_the_boot_and_the_container_phases(instance: VmContainerInstance) -> None:
    backend = VmContainerBackend
    assert list(backend.phase_events) == [*PHASES, CONTAINER_PHASE]
    phases = instance.phases
    values = [phases[name] for name in backend.phase_events]
    assert all(v is not None and v > 0 for v in values), phases
    assert values == sorted(values), phases
    assert phases[backend.startup_phase] == phases[CONTAINER_PHASE] > phases[PHASES[-1]]


def test_memory_is_the_vms_qemu(instance: VmContainerInstance) -> None:
    reading = instance.memory()
    assert str(instance.vm.qemu_pid()) in reading.parts
    assert reading.pss > 50 << 20  # a booted guest's RAM that QEMU touched
    assert reading.cgroup > 50 << 20  # libvirt's cgroup of the VM's QEMU


def test_startup_is_boot_then_crun_run_and_leaves_nothing(full_image: ImageArtifacts) -> None:
    before = vmvc_domains()
    backend = make_backend("vm-container", context_of(full_image))
    seconds = backend.time_to_exit(["true"])
    assert 0 < seconds < 180
    assert not vmvc_domains() - before  # its VM destroyed (QEMU's end: the session's check)
    with pytest.raises(VmvcError, match="an instance boots idle"):
        backend.start(["true"])
