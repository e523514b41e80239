"""VMs from the shared image through libvirt: boot (timed phase by phase), run commands
through the guest agent, read memory, shut down or destroy, and clean up.

Each VM is a transient domain started with auto-destroy (a crashed harness leaves no VM
running) on a per-VM qcow2 overlay of the image's raw disk (the image is never written),
with its serial console, agent socket and marker socket in its own work dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import libvirt

from vmdriver import agent
from vmdriver.accel import KvmVerdict, decide_accelerator
from vmdriver.connection import DEFAULT_URI, open_connection
from vmdriver.errors import VmError

WORKDIR = Path(os.environ.get("VMVC_VM_DIR", "/var/lib/vmvc/vms"))
NAME_PREFIX = "vmvc-vm-"
QEMU = "/usr/bin/qemu-system-x86_64"
PHASES = ("qemu_started", "kernel_started", "init_started", "agent_connected",
          "first_command_done")
PHASE_EVENTS = {
    "qemu_started": "create requested → libvirt lifecycle event STARTED (QEMU process up)",
    "kernel_started": "create requested → first byte of the guest kernel on the serial console",
    "init_started": "create requested → 'init-started' from the guest init on the "
                    "org.vmvc.marker.0 port, timestamped on the host on arrival",
    "agent_connected": "create requested → libvirt agent lifecycle event CONNECTED",
    "first_command_done": "create requested → guest-exec of /bin/true reported exited",
}


@dataclass
class VmConfig:
    kernel: Path
    initramfs: Path
    disk: Path  # the image's raw ext4 disk: the VM writes to an overlay of it
    vcpus: int = 1
    memory_mib: int = 512
    accelerator: str = "auto"  # auto (the KVM probe decides), kvm or tcg
    uri: str = DEFAULT_URI
    cmdline: str = "console=ttyS0 panic=-1"
    boot_timeout: float = 180.0
    probe_cache: Path | None = None  # where the KVM probe's verdict is kept


@dataclass
class BootPhases:
    """Seconds from "create requested" (the monotonic clock, on the host) to each event."""

    qemu_started: float | None = None
    kernel_started: float | None = None
    init_started: float | None = None
    agent_connected: float | None = None
    first_command_done: float | None = None
    create_call: float | None = None  # createXML's own duration

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in (*PHASES, "create_call")}


@dataclass
class Vm:
    name: str
    domain: libvirt.virDomain
    conn: libvirt.virConnect
    workdir: Path
    accelerator: KvmVerdict
    config: VmConfig
    phases: BootPhases
    tuning: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How results of this VM are labelled: under TCG they are emulated."""
        return "kvm" if self.accelerator.accelerator == "kvm" else "tcg (emulated)"

    def exec(self, argv: list[str], timeout: float = 60.0) -> agent.ExecResult:
        return agent.guest_exec(self.domain, argv, timeout)

    def qemu_pid(self) -> int:
        path = Path(f"/run/libvirt/qemu/{self.name}.pid")
        try:
            return int(path.read_text())
        except (OSError, ValueError) as exc:
            raise VmError(f"{self.name}: no QEMU pid ({path})") from exc

    def stats(self) -> dict[str, object]:
        """Memory as the host and the guest see it, each figure with its source.

        qemu_pss_kib: PSS of the QEMU process (/proc/PID/smaps_rollup; shared pages split);
        qemu_rss_kib: its RSS; cgroup_bytes: the domain's memory cgroup usage (libvirt puts
        each VM in one); libvirt: virDomainMemoryStats (balloon driver; KiB);
        guest_meminfo_kib: MemTotal/MemAvailable from the guest's /proc/meminfo (agent).
        """
        pid = self.qemu_pid()
        rollup = _kib_fields(Path(f"/proc/{pid}/smaps_rollup").read_text())
        meminfo = self.exec(["/bin/cat", "/proc/meminfo"], timeout=30).stdout
        guest = _kib_fields(meminfo)
        return {
            "qemu_pid": pid,
            "qemu_pss_kib": rollup.get("Pss"),
            "qemu_rss_kib": rollup.get("Rss"),
            "cgroup_bytes": _memory_cgroup_usage(pid),
            "libvirt": dict(self.domain.memoryStats()),
            "guest_meminfo_kib": {k: guest.get(k) for k in ("MemTotal", "MemAvailable",
                                                            "MemFree")},
            "configured_mib": self.config.memory_mib,
        }

    def shutdown(self, timeout: float = 60.0) -> float:
        """Clean shutdown through ACPI (the guest's acpid powers it off): seconds to gone."""
        start = time.monotonic()
        try:
            self.domain.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        except libvirt.libvirtError as exc:
            raise VmError(f"{self.name}: ACPI shutdown: {exc.get_error_message()}") from exc
        while time.monotonic() - start < timeout:
            if not self._exists():
                seconds = time.monotonic() - start
                self._remove_workdir()
                return seconds
            time.sleep(0.01)
        raise VmError(f"{self.name} did not power off within {timeout:.0f} s of ACPI shutdown")

    def destroy(self) -> float:
        """Pull the plug: seconds until the domain is gone."""
        start = time.monotonic()
        if self._exists():
            try:
                self.domain.destroy()
            except libvirt.libvirtError as exc:
                if self._exists():
                    raise VmError(f"{self.name}: destroy: {exc.get_error_message()}") from exc
        seconds = time.monotonic() - start
        self._remove_workdir()
        return seconds

    def close(self) -> None:
        """Destroy if still running, remove the work dir, close the connection."""
        try:
            self.destroy()
        finally:
            self.conn.close()

    def _exists(self) -> bool:
        try:
            self.conn.lookupByName(self.name)
            return True
        except libvirt.libvirtError:
            return False

    def _remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _render_xml(**values: object) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("vmdriver", "templates"),
                             autoescape=jinja2.select_autoescape(["xml", "j2"]),
                             undefined=jinja2.StrictUndefined)
    return env.get_template("domain.xml.j2").render(**values)


def _check_config(config: VmConfig) -> None:
    for what, path in (("kernel", config.kernel), ("initramfs", config.initramfs),
                       ("disk", config.disk)):
        if not Path(path).is_file():
            raise VmError(f"VM {what} {path} does not exist")
    host_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    if not 64 <= config.memory_mib <= host_mib:
        raise VmError(f"VM memory {config.memory_mib} MiB: give 64..{host_mib} MiB")
    if not 1 <= config.vcpus <= (os.cpu_count() or 1) * 4:
        raise VmError(f"VM vCPUs {config.vcpus}: give 1..{(os.cpu_count() or 1) * 4}")
    if config.accelerator not in ("auto", "kvm", "tcg"):
        raise VmError(f"accelerator {config.accelerator!r}: choose auto, kvm or tcg")


def choose_accelerator(config: VmConfig) -> KvmVerdict:
    if config.accelerator == "auto":
        return decide_accelerator(config.kernel, config.initramfs, config.probe_cache)
    forced = config.accelerator
    return KvmVerdict(forced == "kvm", forced, f"requested: {forced}")


class _Watch:
    """Host-side timestamps of the boot: lifecycle/agent events, serial output, marker."""

    def __init__(self, name: str, start: float, serial: Path, marker: Path) -> None:
        self.name, self.start = name, start
        self.times: dict[str, float] = {}
        self.done = threading.Event()
        self.serial, self.marker = serial, marker
        self.threads = [threading.Thread(target=self._watch_serial, daemon=True),
                        threading.Thread(target=self._watch_marker, daemon=True)]

    def note(self, phase: str) -> None:
        self.times.setdefault(phase, time.monotonic() - self.start)

    def on_lifecycle(self, _conn, dom, event: int, _detail: int, _opaque) -> None:
        if dom.name() == self.name and event == libvirt.VIR_DOMAIN_EVENT_STARTED:
            self.note("qemu_started")

    def on_agent(self, _conn, dom, state: int, _reason: int, _opaque) -> None:
        if dom.name() == self.name and \
                state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED:
            self.note("agent_connected")

    def _watch_serial(self) -> None:
        while not self.done.is_set() and "kernel_started" not in self.times:
            try:
                if self.serial.stat().st_size > 0:
                    self.note("kernel_started")
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.002)

    def _watch_marker(self) -> None:
        sock = socket.socket(socket.AF_UNIX)
        try:
            while not self.done.is_set():
                try:
                    sock.connect(str(self.marker))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    time.sleep(0.002)
            sock.settimeout(0.2)
            buffer = b""
            while not self.done.is_set():
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:  # the VM went away
                    return
                if not chunk:
                    return
                buffer += chunk
                if b"init-started" in buffer:
                    self.note("init_started")
                    return
        finally:
            sock.close()


def boot(config: VmConfig) -> Vm:
    """Boot a VM from the image; returns once a first command ran through the guest agent."""
    _check_config(config)
    verdict = choose_accelerator(config)
    conn = open_connection(config.uri)
    name = f"{NAME_PREFIX}{uuid.uuid4().hex[:10]}"
    workdir = WORKDIR / name
    callbacks: list[int] = []
    dom = None
    watch = None
    try:
        workdir.mkdir(parents=True, mode=0o755)
        overlay = workdir / "disk.qcow2"
        proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                               str(Path(config.disk).resolve()), str(overlay)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise VmError(f"qemu-img create of the overlay failed: {proc.stderr.strip()}")
        xml = _render_xml(
            domain_type=verdict.libvirt_domain_type, name=name, accelerator=verdict.accelerator,
            workdir=workdir, memory_mib=config.memory_mib, vcpus=config.vcpus,
            kernel=Path(config.kernel).resolve(), initramfs=Path(config.initramfs).resolve(),
            cmdline=config.cmdline, emulator=QEMU, overlay=overlay,
            serial_log=workdir / "serial.log", agent_socket=workdir / "agent.sock",
            marker_socket=workdir / "marker.sock")
        start = time.monotonic()
        watch = _Watch(name, start, workdir / "serial.log", workdir / "marker.sock")
        callbacks.append(conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, watch.on_lifecycle, None))
        callbacks.append(conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, watch.on_agent, None))
        for thread in watch.threads:
            thread.start()
        try:
            dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_AUTODESTROY)
        except libvirt.libvirtError as exc:
            raise VmError(f"starting {name}: {exc.get_error_message()}") from exc
        create_call = time.monotonic() - start
        vm = Vm(name, dom, conn, workdir, verdict, config, BootPhases(create_call=create_call),
                tuning={"cpu": "host-passthrough" if verdict.accelerator == "kvm"
                        else "qemu default (TCG)", "vcpu_pinning": "none", "hugepages": "no",
                        "ksm": _ksm_state(), "balloon": "virtio, stats every 1 s"})
        deadline = start + config.boot_timeout
        while "agent_connected" not in watch.times:
            if time.monotonic() > deadline:
                raise VmError(f"{name}: the guest agent did not connect within "
                              f"{config.boot_timeout:.0f} s (serial log: {_tail(workdir)})")
            time.sleep(0.005)
        result = vm.exec(["/bin/true"], timeout=max(5.0, deadline - time.monotonic()))
        watch.note("first_command_done")
        if result.exit_code != 0:
            raise VmError(f"{name}: /bin/true in the guest exited {result.exit_code}")
        for phase in PHASES:
            setattr(vm.phases, phase, watch.times.get(phase))
        return vm
    except BaseException:
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
        conn.close()
        raise
    finally:
        if watch is not None:
            watch.done.set()
        for callback in callbacks:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(callback)


def _tail(workdir: Path) -> str:
    try:
        lines = (workdir / "serial.log").read_text(errors="replace").strip().splitlines()
        return lines[-1][:100] if lines else "empty"
    except OSError:
        return "missing"


def _ksm_state() -> str:
    try:
        return "on" if Path("/sys/kernel/mm/ksm/run").read_text().strip() == "1" else "off"
    except OSError:
        return "unknown"


def _kib_fields(text: str) -> dict[str, int]:
    """``Name:  1234 kB`` lines (smaps_rollup, meminfo) → {Name: 1234}."""
    fields = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    return fields


def _memory_cgroup_usage(pid: int) -> int | None:
    """Bytes charged to the memory cgroup *pid* lives in (v1 or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "memory":
            file = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.usage_in_bytes"
        elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            file = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.current"
        else:
            continue
        try:
            return int(file.read_text())
        except (OSError, ValueError):
            return None
    return None


def cleanup(uri: str = DEFAULT_URI) -> list[str]:
    """Remove what a killed run left: vmvc domains, and work dirs of VMs that are gone."""
    removed = []
    try:
        conn = open_connection(uri)
    except VmError:
        conn = None
    alive = set()
    if conn is not None:
        try:
            for dom in conn.listAllDomains():
                if dom.name().startswith(NAME_PREFIX):
                    try:
                        dom.destroy()
                        removed.append(f"domain {dom.name()}")
                    except libvirt.libvirtError:
                        alive.add(dom.name())
        finally:
            conn.close()
    if WORKDIR.is_dir():
        for workdir in WORKDIR.iterdir():
            if workdir.name.startswith(NAME_PREFIX) and workdir.name not in alive:
                shutil.rmtree(workdir, ignore_errors=True)
                removed.append(f"work dir {workdir}")
    return removed
