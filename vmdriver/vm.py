"""VMs from the shared image through libvirt: boot (timed phase by phase), run commands
through the guest agent, read memory, shut down or destroy, and clean up.

Each VM is a transient domain started with auto-destroy (a crashed harness leaves no VM
running) on a per-VM qcow2 overlay of the image's raw disk (the image is never written),
with its serial console, agent socket and marker socket in its own work dir (0700, in a
0700 dir: a host user must reach neither the guest's disk nor its sockets).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
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

from paths import VM_WORKDIR, kvm_probe_file
from vmdriver import agent
from vmdriver.accel import KvmVerdict, decide_accelerator
from vmdriver.connection import DEFAULT_URI, open_connection
from vmdriver.errors import VmError

NAME_PREFIX = "vmvc-vm-"
QEMU = "/usr/bin/qemu-system-x86_64"
PHASES = ("qemu_started", "kernel_started", "init_started", "agent_connected",
          "first_command_done")
PHASE_EVENTS = {
    "qemu_started": "create requested → libvirt lifecycle event STARTED (QEMU up and its "
                    "vCPUs started; about when createXML returns)",
    "kernel_started": "create requested → first byte of the guest kernel in the serial log "
                      "file (written through virtlogd)",
    "init_started": "create requested → 'init-started' from the guest init on the "
                    "org.vmvc.marker.0 port, timestamped on the host on arrival",
    "agent_connected": "create requested → libvirt agent lifecycle event CONNECTED",
    "first_command_done": "create requested → guest-exec of /bin/true reported exited",
}
NETWORK_PHASE = ("network_up", "create requested → 'network-up' from the guest init on the "
                 "org.vmvc.marker.0 port (eth0 addressed and up), timestamped on the host "
                 "on arrival; only VMs with a NIC")
MARKER_LINE_MAX = 4096
"""Bytes a marker line may take (the guest init's are words): a longer one is an error, so
a guest that floods the port without a newline cannot grow the host's memory."""


@dataclass(frozen=True)
class Nic:
    """A virtio-net NIC on the host bridge *bridge*, its address fixed by the host: the
    guest init sets it on eth0 from the kernel command line (``vmvc.ip=ADDR/PREFIX``) before
    it starts the guest agent, so a VM is reachable once its agent connects. No gateway:
    the guest talks to the host and its bridge's other members only."""

    bridge: str
    address: str
    prefixlen: int

    @property
    def mac(self) -> str:
        """Locally administered (QEMU's 52:54:00 prefix), unique per address."""
        return "52:54:00:" + ":".join(f"{int(o):02x}" for o in self.address.split(".")[1:])

    def tap(self, vm_name: str) -> str:
        """The host's tap device: the VM's own name within 15 characters (not libvirt's
        vnetN, so a leftover is known for the suite's)."""
        return f"vmvct{vm_name.removeprefix(NAME_PREFIX)}"[:15]


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
    probe_cache: Path | None = field(default_factory=kvm_probe_file)
    nic: Nic | None = None  # None: no network device at all (the startup figures' VM)
    cpuset: str = ""  # host CPUs for its vCPUs and QEMU's own threads, "0,2" (empty: any)


@dataclass
class BootPhases:
    """Seconds from "create requested" (the monotonic clock, on the host) to each event."""

    qemu_started: float | None = None
    kernel_started: float | None = None
    init_started: float | None = None
    agent_connected: float | None = None
    first_command_done: float | None = None
    create_call: float | None = None  # createXML's own duration
    network_up: float | None = None  # only a VM with a NIC (NETWORK_PHASE)

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in (*PHASES, "create_call", "network_up")}


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
    lock_fd: int = -1  # held while this process owns the VM (see cleanup)
    created: float = 0.0  # "create requested" on the host's monotonic clock: the phases' zero

    @property
    def label(self) -> str:
        """How results of this VM are labelled: under TCG they are emulated."""
        return "kvm" if self.accelerator.accelerator == "kvm" else "tcg (emulated)"

    def exec(self, argv: list[str], timeout: float = 60.0,
             stdin: bytes | None = None) -> agent.ExecResult:
        return agent.guest_exec(self.domain, argv, timeout, stdin)

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
        try:
            rollup = _kib_fields(Path(f"/proc/{pid}/smaps_rollup").read_text())
            balloon = dict(self.domain.memoryStats())
        except (OSError, libvirt.libvirtError) as exc:
            raise VmError(f"{self.name}: memory readings: {exc}") from exc
        guest = _kib_fields(self.exec(["/bin/cat", "/proc/meminfo"], timeout=30).stdout)
        return {
            "qemu_pid": pid,
            "qemu_pss_kib": rollup.get("Pss"),
            "qemu_rss_kib": rollup.get("Rss"),
            "cgroup_bytes": memory_cgroup_usage(pid),
            "libvirt": balloon,
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
                clean = "vmvc-guest: poweroff" in self._serial()
                self._remove_workdir()
                if not clean:  # gone, but not by its own poweroff: not a clean shutdown
                    raise VmError(f"{self.name} vanished without powering itself off")
                return seconds
            time.sleep(0.01)
        raise VmError(f"{self.name} did not power off within {timeout:.0f} s of ACPI shutdown")

    def _serial(self) -> str:
        try:
            return (self.workdir / "serial.log").read_text(errors="replace")
        except OSError:
            return ""

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
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise VmError(f"{self.name}: libvirt: {exc.get_error_message()}") from exc

    def _remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _render_xml(**values: object) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("vmdriver", "templates"),
                             autoescape=jinja2.select_autoescape(["xml", "j2"]),
                             undefined=jinja2.StrictUndefined)
    return env.get_template("domain.xml.j2").render(**values)


def domain_xml(name: str, workdir: Path, config: VmConfig, verdict: KvmVerdict) -> str:
    """The transient domain of one VM: KVM with the host's CPU passed through, or QEMU's
    TCG with its default CPU; the disk, sockets and serial log in *workdir*."""
    nic = config.nic
    cmdline = config.cmdline + (f" vmvc.ip={nic.address}/{nic.prefixlen}" if nic else "")
    return _render_xml(
        domain_type=verdict.libvirt_domain_type, name=name, accelerator=verdict.accelerator,
        workdir=workdir, memory_mib=config.memory_mib, vcpus=config.vcpus,
        cpuset=config.cpuset, kernel=Path(config.kernel).resolve(),
        initramfs=Path(config.initramfs).resolve(),
        cmdline=cmdline, emulator=QEMU, nic=nic, tap=nic.tap(name) if nic else "",
        vhost=_vhost(verdict), overlay=workdir / "disk.qcow2",
        serial_log=workdir / "serial.log", agent_socket=workdir / "agent.sock",
        marker_socket=workdir / "marker.sock")


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
    if config.cpuset and not re.fullmatch(r"\d+(,\d+)*", config.cpuset):
        raise VmError(f"VM cpuset {config.cpuset!r}: give host CPU numbers like 0,2")


def choose_accelerator(config: VmConfig) -> KvmVerdict:
    if config.accelerator == "auto":
        return decide_accelerator(config.kernel, config.initramfs, config.probe_cache)
    forced = config.accelerator
    return KvmVerdict(forced == "kvm", forced, f"requested: {forced}")


class _Watch:
    """Host-side timestamps of a boot: lifecycle/agent events, serial output, marker line."""

    def __init__(self, name: str, serial: Path, marker: Path) -> None:
        self.name = name
        self.start = 0.0
        self.times: dict[str, float] = {}
        self.done = threading.Event()
        self.serial, self.marker = serial, marker
        self.threads = [threading.Thread(target=self._watch_serial, daemon=True),
                        threading.Thread(target=self._watch_marker, daemon=True)]

    def begin(self) -> None:
        """"Create requested": the zero of every phase, then watch."""
        self.start = time.monotonic()
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.done.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout=2)

    def note(self, phase: str) -> None:
        self.times.setdefault(phase, time.monotonic() - self.start)

    def on_lifecycle(self, _conn, dom, event: int, _detail: int, _opaque) -> None:
        if dom.name() != self.name:
            return
        if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
            self.note("qemu_started")
        elif event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self.note("stopped")

    def on_agent(self, _conn, dom, state: int, _reason: int, _opaque) -> None:
        if dom.name() == self.name and \
                state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED:
            self.note("agent_connected")

    def _watch_serial(self) -> None:
        while not self.done.is_set():
            try:
                if self.serial.stat().st_size > 0:
                    self.note("kernel_started")
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.002)

    def _watch_marker(self) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            while not self.done.is_set():
                try:
                    sock.connect(str(self.marker))
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    time.sleep(0.002)
            sock.settimeout(0.2)
            self._read_markers(sock)

    def _read_markers(self, sock: socket.socket) -> None:
        """Marker lines as they come; only the line being received is kept, at most
        MARKER_LINE_MAX bytes: past that the boot fails ("marker_overflow")."""
        partial = b""
        while not self.done.is_set():
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # the VM went away
                return
            if not chunk:
                return
            *lines, partial = (partial + chunk).split(b"\n")
            if len(partial) > MARKER_LINE_MAX or any(len(x) > MARKER_LINE_MAX for x in lines):
                self.note("marker_overflow")
                return
            for line in lines:
                if line.strip() == b"init-started":
                    self.note("init_started")
                elif line.strip() == b"network-up":
                    self.note("network_up")
                elif line.strip() == b"network-failed":
                    self.note("network_failed")
                elif line.strip() == b"no-agent":
                    self.note("no_agent")
                    return


def _create_overlay(disk: Path, overlay: Path) -> None:
    try:
        proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                               str(Path(disk).resolve()), str(overlay)],
                              capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise VmError("qemu-img not found: install qemu-utils (make setup)") from exc
    if proc.returncode != 0:
        raise VmError(f"qemu-img create of the overlay failed: {_one_line(proc.stderr)}")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _claim_workdir(workdir: Path) -> int:
    """Make the VM's work dir and hold a lock on it for the VM's life: ``cleanup`` leaves
    a locked dir (its owner is alive) alone; the lock goes with the owner's death.

    Both it and the dir of all VMs are 0700 (set, not only asked of mkdir: the umask and
    older installations): the sockets and the guest's disk are root's alone."""
    try:
        workdir.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(workdir.parent, 0o700)
        workdir.mkdir(mode=0o700)
        os.chmod(workdir, 0o700)
        fd = os.open(workdir / "owner.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise VmError(f"cannot make the VM work dir {workdir}: {exc.strerror}") from exc
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


CREATE_FLAGS = libvirt.VIR_DOMAIN_START_AUTODESTROY
"""How a VM's domain is created: gone when our connection closes, so a crashed harness
leaves no VM running."""


def boot(config: VmConfig) -> Vm:
    """Boot a VM from the image; returns once a first command ran through the guest agent."""
    _check_config(config)
    verdict = choose_accelerator(config)
    conn = open_connection(config.uri)
    name = f"{NAME_PREFIX}{uuid.uuid4().hex[:10]}"
    workdir = VM_WORKDIR / name
    callbacks: list[int] = []
    dom = None
    watch = None
    lock_fd = -1
    try:
        lock_fd = _claim_workdir(workdir)
        overlay = workdir / "disk.qcow2"
        _create_overlay(config.disk, overlay)
        xml = domain_xml(name, workdir, config, verdict)
        watch = _Watch(name, workdir / "serial.log", workdir / "marker.sock")
        try:
            callbacks.append(conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, watch.on_lifecycle, None))
            callbacks.append(conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, watch.on_agent, None))
        except libvirt.libvirtError as exc:
            raise VmError(f"libvirt events: {exc.get_error_message()}") from exc
        watch.begin()
        try:
            dom = conn.createXML(xml, CREATE_FLAGS)
        except libvirt.libvirtError as exc:
            raise VmError(f"starting {name}: {_one_line(exc.get_error_message())}") from exc
        create_call = time.monotonic() - watch.start
        vm = Vm(name, dom, conn, workdir, verdict, config, BootPhases(create_call=create_call),
                tuning={"cpu": "host-passthrough" if verdict.accelerator == "kvm"
                        else "qemu default (TCG)", "vcpu_pinning": config.cpuset or "none",
                        "hugepages": "no",
                        "ksm": _ksm_state(), "balloon": "virtio, stats every 1 s",
                        **_nic_tuning(config, verdict)},
                lock_fd=lock_fd, created=watch.start)
        _wait_for_agent(watch, name, workdir, watch.start + config.boot_timeout)
        result = vm.exec(["/bin/true"],
                         timeout=max(5.0, watch.start + config.boot_timeout - time.monotonic()))
        watch.note("first_command_done")
        if result.exit_code != 0:
            raise VmError(f"{name}: /bin/true in the guest exited {result.exit_code}")
        for phase in (*PHASES, "network_up"):
            setattr(vm.phases, phase, watch.times.get(phase))
        return vm
    except BaseException:
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
        _release(callbacks, conn, watch)
        callbacks = []
        shutil.rmtree(workdir, ignore_errors=True)
        if lock_fd >= 0:
            os.close(lock_fd)
        conn.close()
        raise
    finally:
        _release(callbacks, conn, watch)


def _release(callbacks: list[int], conn: libvirt.virConnect, watch: _Watch | None) -> None:
    """Deregister the boot's event callbacks (before any close) and stop its watchers."""
    for callback in callbacks:
        with contextlib.suppress(libvirt.libvirtError):
            conn.domainEventDeregisterAny(callback)
    if watch is not None:
        watch.finish()


def _wait_for_agent(watch: _Watch, name: str, workdir: Path, deadline: float) -> None:
    while "agent_connected" not in watch.times:
        if "stopped" in watch.times:
            raise VmError(f"{name} stopped while booting (serial log: {_tail(workdir)})")
        if "network_failed" in watch.times:
            raise VmError(f"{name}: the guest init could not set up eth0 (serial log: "
                          f"{_tail(workdir)})")
        if "no_agent" in watch.times:
            raise VmError(f"{name}: the image has no guest agent (the guest init said so)")
        if "marker_overflow" in watch.times:
            raise VmError(f"{name}: the guest sent a marker line over {MARKER_LINE_MAX} bytes "
                          "on org.vmvc.marker.0 (its init writes short words)")
        if time.monotonic() > deadline:
            raise VmError(f"{name}: the guest agent did not connect within "
                          f"{deadline - watch.start:.0f} s (serial log: {_tail(workdir)})")
        time.sleep(0.005)


def _tail(workdir: Path) -> str:
    try:
        lines = (workdir / "serial.log").read_text(errors="replace").strip().splitlines()
        return lines[-1][:100] if lines else "empty"
    except OSError:
        return "missing"


def _vhost(verdict: KvmVerdict) -> bool:
    """vhost-net moves virtio-net's data path into the host kernel; it needs KVM."""
    return verdict.accelerator == "kvm" and os.path.exists("/dev/vhost-net")


def _nic_tuning(config: VmConfig, verdict: KvmVerdict) -> dict[str, str]:
    if config.nic is None:
        return {"network": "none (no NIC)"}
    vhost = _vhost(verdict)
    return {"network": f"virtio-net on bridge {config.nic.bridge}, "
            + ("vhost-net (in the host kernel)" if vhost else
               "QEMU's own virtio-net backend (no vhost-net: " + (
                   "TCG cannot use it)" if verdict.accelerator != "kvm"
                   else "/dev/vhost-net missing)"))}


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


def memory_cgroup_usage(pid: int) -> int | None:
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


def owner_alive(workdir: Path) -> bool:
    """Is the process that booted this VM still holding its work dir's lock?"""
    try:
        fd = os.open(workdir / "owner.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def cleanup(uri: str = DEFAULT_URI) -> list[str]:
    """Remove what a killed run left: vmvc domains and work dirs whose owner is gone.

    VMs of a live process (it holds its work dir's lock) are left alone; without libvirt
    nothing is touched (a work dir could belong to a VM we cannot see).
    """
    removed = []
    conn = open_connection(uri)
    try:
        names = {d.name(): d for d in conn.listAllDomains() if d.name().startswith(NAME_PREFIX)}
        for name, dom in names.items():
            if not owner_alive(VM_WORKDIR / name):
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
                    removed.append(f"domain {name}")
        if VM_WORKDIR.is_dir():
            for workdir in VM_WORKDIR.iterdir():
                if workdir.name.startswith(NAME_PREFIX) and not owner_alive(workdir):
                    if workdir.name in names and names[workdir.name].isActive():
                        continue
                    shutil.rmtree(workdir, ignore_errors=True)
                    removed.append(f"work dir {workdir}")
    finally:
        conn.close()
    return removed
