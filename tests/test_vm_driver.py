"""The libvirt VM driver against the real libvirtd and QEMU (TCG on our hosts, KVM where
the host has it): boot, the guest agent, boot phases, memory, shutdown, errors, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from image.build import ImageArtifacts
from image.initramfs import guest_source
from paths import VM_WORKDIR
from vmdriver import vm as vm_module
from vmdriver.errors import VmError
from vmdriver.vm import NAME_PREFIX, PHASE_EVENTS, PHASES, Vm, VmConfig, boot

pytestmark = pytest.mark.slow  # every test boots a VM or starts libvirt domains


def vmvc_domains() -> set[str]:
    conn = libvirt.open("qemu:///system")
    try:
        return {d.name() for d in conn.listAllDomains() if d.name().startswith(NAME_PREFIX)}
    finally:
        conn.close()


def workdirs() -> set[str]:
    return {p.name for p in VM_WORKDIR.glob(f"{NAME_PREFIX}*")} if VM_WORKDIR.is_dir() else set()


def config(image: ImageArtifacts, **changes: object) -> VmConfig:
    return VmConfig(kernel=image.kernel, initramfs=image.initramfs, disk=image.disk, **changes)


@pytest.fixture(scope="module")
def vm(full_image: ImageArtifacts) -> Iterator[Vm]:
    with boot(config(full_image)) as machine:
        yield machine
    assert machine.name not in vmvc_domains() and machine.name not in workdirs()


def test_commands_output_and_exit_codes(vm: Vm, full_image: ImageArtifacts) -> None:
    manifest = json.loads(full_image.manifest.read_text())
    uname = vm.exec(["/bin/uname", "-r"])
    assert uname.exit_code == 0 and uname.stdout.strip() == manifest["kernel_version"]
    sysbench = vm.exec(["sysbench", "--version"])
    assert sysbench.exit_code == 0 and sysbench.stdout.startswith("sysbench ")
    failing = vm.exec(["/bin/sh", "-c", "echo oops >&2; exit 3"])
    assert (failing.exit_code, failing.stderr) == (3, "oops\n")


def test_overlayfs_on_request_only_and_a_commands_stdin(vm: Vm) -> None:
    """The initramfs holds overlay.ko but loads it only when the kernel command line asks
    (vmvc.load=overlay: vm-container's VMs, tested there): a plain VM boots as before."""
    assert "vmvc.load" not in vm.exec(["/bin/cat", "/proc/cmdline"]).stdout
    assert "overlay" not in vm.exec(["/bin/cat", "/proc/filesystems"]).stdout
    assert vm.exec(["/bin/cat"], stdin=b"through stdin\n").stdout == "through stdin\n"


def test_a_hanging_command_times_out_and_the_vm_stays_usable(vm: Vm) -> None:
    hung = vm.exec(["/bin/sleep", "600"], timeout=2)
    assert hung.timed_out and 2 <= hung.seconds < 15
    assert vm.exec(["/bin/sh", "-c", "pgrep -x sleep || echo gone"]).stdout.strip() == "gone"
    assert vm.exec(["/bin/echo", "still here"]).stdout == "still here\n"


def test_boot_phases_are_ordered(vm: Vm) -> None:
    phases = vm.phases.as_dict()
    values = [phases[name] for name in PHASES]
    assert all(v is not None and v > 0 for v in values), phases
    assert values == sorted(values), phases
    assert phases["create_call"] <= phases["agent_connected"]
    assert set(PHASE_EVENTS) == set(PHASES)  # each phase states its clock and events
    assert all("create requested →" in PHASE_EVENTS[name] for name in PHASES)


def test_accelerator_is_chosen_and_labelled(vm: Vm) -> None:
    xml = vm.domain.XMLDesc()
    if vm.accelerator.accelerator == "kvm":
        assert "type='kvm'" in xml and vm.label == "kvm"
    else:
        assert "type='qemu'" in xml and vm.label == "tcg (emulated)"
        assert vm.accelerator.how  # the probe's evidence comes with the VM
    if Path("/sys/module/kvm_pvm").exists():  # our hosts: KVM present but unusable
        assert vm.accelerator.accelerator == "tcg"
    assert "<vmvc:accelerator>" in xml
    assert set(vm.tuning) >= {"cpu", "vcpu_pinning", "hugepages", "ksm", "balloon"}


def test_memory_from_host_and_guest(vm: Vm) -> None:
    stats = vm.stats()
    assert stats["qemu_pss_kib"] > 50_000  # QEMU with a booted guest: tens of MB at least
    assert stats["qemu_rss_kib"] >= stats["qemu_pss_kib"]
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists():  # v1/hybrid: our hosts
        assert stats["cgroup_bytes"] > 50_000_000
    assert stats["libvirt"]["actual"] == 512 * 1024
    assert 0 < stats["guest_meminfo_kib"]["MemTotal"] <= 512 * 1024


def test_the_guest_sees_the_containers_bits(vm: Vm, full_image: ImageArtifacts) -> None:
    script = guest_source("rootfs-digest.sh").decode()
    result = vm.exec(["/bin/sh", "-c", script], timeout=600)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == full_image.digest


def test_acpi_shutdown_and_three_vms_at_once(full_image: ImageArtifacts) -> None:
    machines: list[Vm] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            machines.append(boot(config(full_image, memory_mib=256)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        assert len({m.name for m in machines}) == 3
        assert {m.name for m in machines} <= vmvc_domains()
        seconds = machines[0].shutdown(timeout=60)  # ACPI → acpid → poweroff
        assert seconds < 60
    finally:
        for machine in machines:
            machine.close()
    assert not vmvc_domains() & {m.name for m in machines}
    assert not workdirs() & {m.name for m in machines}


@pytest.mark.parametrize(("change", "message"), [
    ({"kernel": Path("/nonexistent/vmlinuz")}, "VM kernel /nonexistent/vmlinuz does not exist"),
    ({"disk": Path("/nonexistent/disk.ext4")}, "VM disk /nonexistent/disk.ext4 does not exist"),
    ({"memory_mib": 0}, "VM memory 0 MiB"),
    ({"uri": "qemu+unix:///system?socket=/nonexistent/sock"}, "cannot connect to libvirt"),
])
def test_bad_input_is_one_error_and_leaves_nothing(full_image: ImageArtifacts,
                                                   change: dict, message: str) -> None:
    before = (vmvc_domains(), workdirs())
    settings = {"kernel": full_image.kernel, "initramfs": full_image.initramfs,
                "disk": full_image.disk, **change}
    with pytest.raises(VmError, match=message.replace("(", r"\(")) as caught:
        boot(VmConfig(**settings))
    assert "\n" not in str(caught.value)
    assert (vmvc_domains(), workdirs()) == before


def test_a_vm_without_agent_fails_fast_and_leaves_nothing(tiny_image: ImageArtifacts) -> None:
    """A failure once the overlay and the domain exist (busybox image: no guest agent)."""
    before = (vmvc_domains(), workdirs())
    start = time.monotonic()
    with pytest.raises(VmError, match="has no guest agent"):
        boot(config(tiny_image))
    assert time.monotonic() - start < 60  # said by the guest init, not waited out
    assert (vmvc_domains(), workdirs()) == before


def test_the_guest_inits_lines_survive_a_host_that_listens_late(
        tiny_image: ImageArtifacts, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow host connects to the marker socket after the guest wrote its first line: that
    write blocks, holding the port (one opener at a time), and the next line must still
    arrive (CI once lost "no-agent" this way and waited out the 180 s boot timeout)."""
    watch_marker = vm_module._Watch._watch_marker

    def late(self: vm_module._Watch) -> None:
        time.sleep(4)
        watch_marker(self)

    monkeypatch.setattr(vm_module._Watch, "_watch_marker", late)
    before = (vmvc_domains(), workdirs())
    start = time.monotonic()
    with pytest.raises(VmError, match="has no guest agent"):
        boot(config(tiny_image))
    assert time.monotonic() - start < 60
    assert (vmvc_domains(), workdirs()) == before


def test_a_killed_harness_leaves_nothing_after_cleanup(full_image: ImageArtifacts,
                                                       vm: Vm) -> None:
    harness = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from vmdriver.vm import VmConfig, boot
        vm = boot(VmConfig(kernel=Path({str(full_image.kernel)!r}),
                           initramfs=Path({str(full_image.initramfs)!r}),
                           disk=Path({str(full_image.disk)!r}), memory_mib=256))
        print(vm.name, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", harness], stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        assert name.startswith(NAME_PREFIX) and name in vmvc_domains()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    deadline = time.monotonic() + 20  # auto-destroy: the connection died with the harness
    while name in vmvc_domains() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert name not in vmvc_domains()
    out = subprocess.run([sys.executable, "-m", "bench", "cleanup"], capture_output=True,
                         text=True, check=True).stdout
    assert f"work dir {VM_WORKDIR / name}" in out
    assert name not in workdirs()
    assert vm.name in vmvc_domains() and vm.exec(["/bin/true"]).exit_code == 0  # a live
    assert vm.name not in out  # owner's VM is left alone
    assert not any(name in line for line in os.popen("pgrep -a qemu-system").read().splitlines())


def test_forcing_kvm_where_it_does_not_work_fails_cleanly(full_image: ImageArtifacts) -> None:
    if not Path("/sys/module/kvm_pvm").exists():
        pytest.skip("only on hosts whose KVM cannot run the guest")
    before = (vmvc_domains(), workdirs())
    with pytest.raises(VmError, match="starting vmvc-vm-"):
        boot(config(full_image, accelerator="kvm", boot_timeout=30))
    assert (vmvc_domains(), workdirs()) == before
