"""The VM driver's logic where no VM can boot: the domain XML it writes for KVM and for TCG
checked against libvirt's schema, and a boot, its failure and `cleanup` run against
libvirt's in-memory test driver (test:///default). This host has no usable KVM, so the KVM
path is exercised here before a KVM user finds its first bug."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from vmdriver import vm as vm_module
from vmdriver.accel import KvmVerdict
from vmdriver.connection import open_connection
from vmdriver.errors import VmError
from vmdriver.vm import NAME_PREFIX, Nic, VmConfig, boot, cleanup, domain_xml

TEST_URI = "test:///default"  # one in-memory host per process, while a connection is open


@pytest.fixture
def config(tmp_path: Path) -> VmConfig:
    """A VM config whose files exist (the test driver reads none of them)."""
    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(b"\0")
    (tmp_path / "disk.raw").write_bytes(b"\0" * (1 << 20))
    return VmConfig(kernel=tmp_path / "vmlinuz", initramfs=tmp_path / "initrd.img",
                    disk=tmp_path / "disk.raw", uri=TEST_URI, boot_timeout=2.0)


@pytest.fixture
def test_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[libvirt.virConnect]:
    """A connection that keeps test:///default's domains alive for the test; VM work dirs in
    tmp_path. The test driver has no auto-destroy, so domains are created without it."""
    monkeypatch.setattr(vm_module, "VM_WORKDIR", tmp_path / "vms")
    monkeypatch.setattr(vm_module, "CREATE_FLAGS", 0)
    conn = open_connection(TEST_URI)
    try:
        yield conn
    finally:
        for dom in conn.listAllDomains():
            if dom.name().startswith(NAME_PREFIX) and dom.isActive():
                dom.destroy()
        conn.close()


def verdict(accelerator: str) -> KvmVerdict:
    return KvmVerdict(accelerator == "kvm", accelerator, f"requested: {accelerator}")


def validate(xml: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    return subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True,
                          text=True, check=False)


@pytest.mark.parametrize(("accelerator", "domain_type", "cpu"), [
    ("kvm", "kvm", "host-passthrough"), ("tcg", "qemu", None)])
def test_domain_xml_follows_libvirts_schema(accelerator: str, domain_type: str,
                                            cpu: str | None, config: VmConfig,
                                            tmp_path: Path) -> None:
    xml = domain_xml(f"{NAME_PREFIX}xml", tmp_path / "vm", config, verdict(accelerator))
    result = validate(xml, tmp_path)
    assert result.returncode == 0, result.stderr
    domain = ET.fromstring(xml)
    assert domain.get("type") == domain_type
    assert (domain.find("cpu").get("mode") if cpu else domain.find("cpu")) == cpu
    # and the schema check does catch a mistake
    broken = validate(xml.replace("<on_crash>destroy", "<on_crash>explode"), tmp_path)
    assert broken.returncode != 0 and "fails to validate" in broken.stderr


@pytest.mark.parametrize(("accelerator", "driver"), [("kvm", {"vhost", "qemu"}),
                                                      ("tcg", {"qemu"})])
def test_a_vm_on_the_bridge_gets_a_nic_and_its_address(accelerator: str, driver: set[str],
                                                       config: VmConfig,
                                                       tmp_path: Path) -> None:
    """Only with a Nic: virtio-net on the bridge, an isolated port, a tap named for the
    VM, the address for the guest init on the kernel command line."""
    plain = ET.fromstring(domain_xml(f"{NAME_PREFIX}xml", tmp_path, config,
                                     verdict(accelerator)))
    assert plain.find("devices/interface") is None
    assert "vmvc.ip=" not in plain.find("os/cmdline").text
    nic = Nic("vmvc0", "10.88.1.2", 16)
    xml = domain_xml(f"{NAME_PREFIX}0123456789", tmp_path,
                     dataclasses.replace(config, nic=nic), verdict(accelerator))
    assert validate(xml, tmp_path).returncode == 0
    interface = ET.fromstring(xml).find("devices/interface")
    assert interface.get("type") == "bridge"
    assert interface.find("source").get("bridge") == "vmvc0"
    assert interface.find("model").get("type") == "virtio"
    assert interface.find("port").get("isolated") == "yes"
    assert interface.find("mac").get("address") == "52:54:00:58:01:02"
    assert interface.find("target").get("dev") == "vmvct0123456789"  # 15 characters
    assert interface.find("driver").get("name") in driver  # vhost only under KVM
    assert ET.fromstring(xml).find("os/cmdline").text.endswith(" vmvc.ip=10.88.1.2/16")


def test_a_kvm_domain_is_created_as_written_and_a_stop_fails_the_boot(
        config: VmConfig, test_host: libvirt.virConnect, tmp_path: Path) -> None:
    """boot() under KVM up to the guest agent: libvirt takes the XML, the STARTED and
    STOPPED lifecycle events arrive through the event loop, and a domain that stops while
    booting fails the boot at once, leaving no domain and no work dir."""
    seen: list[str] = []

    def stop_it() -> None:  # the "guest" dies as soon as it exists
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for dom in test_host.listAllDomains():
                if dom.name().startswith(NAME_PREFIX) and dom.isActive():
                    seen.append(dom.XMLDesc())
                    dom.destroy()
                    return
            time.sleep(0.01)

    stopper = threading.Thread(target=stop_it)
    stopper.start()
    config.accelerator, config.boot_timeout = "kvm", 30.0
    start = time.monotonic()
    with pytest.raises(VmError, match="stopped while booting"):
        boot(config)
    stopper.join()
    assert time.monotonic() - start < 10  # told by the event, not by the boot timeout
    (xml,) = seen
    domain = ET.fromstring(xml)
    assert domain.get("type") == "kvm" and domain.find("cpu").get("mode") == "host-passthrough"
    assert not [d for d in test_host.listAllDomains() if d.name().startswith(NAME_PREFIX)
                and d.isActive()]
    assert list((tmp_path / "vms").iterdir()) == []


def test_a_guest_without_agent_times_out_and_leaves_nothing(
        config: VmConfig, test_host: libvirt.virConnect, tmp_path: Path) -> None:
    config.accelerator = "tcg"
    with pytest.raises(VmError, match=r"guest agent did not connect within 2 s") as error:
        boot(config)
    assert "\n" not in str(error.value)
    assert not [d for d in test_host.listAllDomains() if d.name().startswith(NAME_PREFIX)
                and d.isActive()]
    assert list((tmp_path / "vms").iterdir()) == []


def test_cleanup_removes_only_the_vms_whose_owner_is_gone(
        config: VmConfig, test_host: libvirt.virConnect, tmp_path: Path) -> None:
    workdir = tmp_path / "vms"
    for name in ("orphan", "owned"):
        test_host.createXML(domain_xml(f"{NAME_PREFIX}{name}", workdir / f"{NAME_PREFIX}{name}",
                                       config, verdict("kvm")), 0)
    lock = vm_module._claim_workdir(workdir / f"{NAME_PREFIX}owned")  # a live owner
    (workdir / f"{NAME_PREFIX}stale").mkdir()  # a dead owner's dir, no domain
    try:
        removed = cleanup(TEST_URI)
    finally:
        os.close(lock)
    assert sorted(removed) == [f"domain {NAME_PREFIX}orphan",
                               f"work dir {workdir / f'{NAME_PREFIX}stale'}"]
    active = {d.name() for d in test_host.listAllDomains() if d.isActive()}
    assert f"{NAME_PREFIX}owned" in active and "test" in active  # not ours: untouched
    assert f"{NAME_PREFIX}orphan" not in active
