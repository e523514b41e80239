"""System containers through libvirt's LXC driver (``lxc:///system``, Debian's
libvirt-daemon-driver-lxc): the same libvirt API the VMs use, the container's init run by
libvirt_lxc, the controller libvirtd starts for each container. Every libvirt call of the
lxc backend is here: domain XML, create with auto-destroy, the init's exit seen as a
lifecycle event, its console, its namespaces (for exec), destroy, and a killed run's domains.

The root filesystem is a directory the caller prepares; libvirt_lxc resolves it in the
mount namespace of libvirtd (:func:`daemon_pid`), which setup starts in a private one where
KVM is unusable (ENVIRONMENT.md): a mount made in the host's is not seen there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import libvirt
import libvirt_lxc

from vmdriver.connection import open_connection
from vmdriver.errors import VmError

URI = "lxc:///system"
NAME_PREFIX = "vmvc-lxc-"  # every domain of the suite's: `vmvc cleanup` finds them by it
LOG_DIR = Path("/var/log/libvirt/lxc")  # libvirt_lxc's log, one file per domain name
DAEMON_PID_FILES = (Path("/run/libvirtd.pid"), Path("/run/virtlxcd.pid"))
CPU_PERIOD_US = 100_000
CONTROLLER_POLL = 0.05  # how often a wait for STOPPED checks that the controller still runs
CREATE_FLAGS = libvirt.VIR_DOMAIN_START_AUTODESTROY
"""Gone when our connection closes: a killed harness leaves no container running."""


@dataclass(frozen=True)
class LxcNic:
    """A veth pair libvirt makes: *host_link* on *bridge* (an isolated port), eth0 inside
    with *address* set by libvirt_lxc; no route beyond the bridge's subnet."""

    bridge: str
    address: str
    prefixlen: int
    host_link: str


@dataclass(frozen=True)
class LxcSpec:
    name: str
    root: Path  # a directory libvirtd's mount namespace sees
    argv: list[str]
    memory_mib: int  # the memory cgroup's limit (libvirt requires one)
    cpus: float | None = None  # a CFS quota, as a fraction of one CPU
    cpuset: str = ""
    nic: LxcNic | None = None  # None: a network namespace with lo only


def domain_xml(spec: LxcSpec) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("vmdriver", "templates"),
                             autoescape=jinja2.select_autoescape(["xml", "j2"]),
                             undefined=jinja2.StrictUndefined)
    quota = int(spec.cpus * CPU_PERIOD_US) if spec.cpus is not None else 0
    return env.get_template("lxc.xml.j2").render(
        name=spec.name, root=spec.root, argv=spec.argv, memory_mib=spec.memory_mib,
        cpuset=spec.cpuset, quota=quota, period=CPU_PERIOD_US, nic=spec.nic)


def daemon_pid() -> int:
    """The libvirtd (or virtlxcd) that runs the LXC driver: its controllers inherit its
    mount namespace."""
    for pid_file in DAEMON_PID_FILES:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if Path(f"/proc/{pid}").exists():
                return pid
    raise VmError("libvirtd is not running (make setup starts it)")


class LxcConnection:
    """One connection to the LXC driver, its lifecycle events routed to the domains that
    wait for their init's exit."""

    def __init__(self, uri: str = URI) -> None:
        self.conn = open_connection(uri)
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        try:
            self._callback = self.conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
        except libvirt.libvirtError as exc:
            self.conn.close()
            raise VmError(f"libvirt events: {exc.get_error_message()}") from exc

    def _on_lifecycle(self, _conn, dom, event: int, _detail: int, _opaque) -> None:
        if event != libvirt.VIR_DOMAIN_EVENT_STOPPED:
            return
        with self._lock:
            stop = self._stops.get(dom.name())
        if stop is not None:
            stop.set()

    def create(self, spec: LxcSpec) -> libvirt.virDomain:
        """Start the container (returns once its init runs); its stop is watched from now."""
        with self._lock:
            self._stops[spec.name] = threading.Event()
        try:
            return self.conn.createXML(domain_xml(spec), CREATE_FLAGS)
        except libvirt.libvirtError as exc:
            self.forget(spec.name)
            raise VmError(f"starting {spec.name}: {_one_line(exc.get_error_message())}") \
                from exc

    def wait_stopped(self, name: str, timeout: float, controller: int = 0) -> None:
        """Block until the domain stops: its init exited, libvirt_lxc saw it and libvirtd
        tore the container down. (The event says Shutdown whatever the init's exit status:
        libvirt does not report it.) With the domain's *controller* pid, its exit counts
        too, noticed within 50 ms: a lifecycle event libvirtd never sent (seen once in a
        quick run's ~30 containers) must not hang a run for the whole timeout."""
        with self._lock:
            stop = self._stops[name]
        deadline = time.monotonic() + timeout
        while not stop.wait(min(CONTROLLER_POLL, max(0.0, deadline - time.monotonic()))):
            if controller and not Path(f"/proc/{controller}").exists():
                return
            if time.monotonic() >= deadline:
                raise VmError(f"{name}: still running after {timeout:.0f} s")

    def wait_init(self, dom: libvirt.virDomain, timeout: float) -> None:
        """createXML returns before libvirtd has heard the init's pid from libvirt_lxc
        (until then its namespaces cannot be opened): wait for it, in bounded time."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                for fd in libvirt_lxc.lxcOpenNamespace(dom, 0):
                    os.close(fd)
                return
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or \
                        time.monotonic() > deadline:
                    raise VmError(f"{dom.name()}: its init did not come up: "
                                  f"{exc.get_error_message()}") from exc
            time.sleep(0.001)

    def stop(self, dom: libvirt.virDomain, timeout: float) -> None:
        """Kill the container now: SIGKILL to its init, then its STOPPED event (libvirt's
        destroy first sends libvirt_lxc SIGTERM and waits: 1.8 s here per container); a
        destroy all the same, and its log removed."""
        name = dom.name()
        with contextlib.suppress(libvirt.libvirtError, OSError):
            controller = dom.ID()
            for pid in Path(f"/proc/{controller}/task/{controller}/children").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(VmError, KeyError):
                self.wait_stopped(name, timeout)
        destroy(dom)

    def forget(self, name: str) -> None:
        with self._lock:
            self._stops.pop(name, None)

    def open_console(self, dom: libvirt.virDomain, sink: list[int]) -> libvirt.virStream:
        """The init's console copied to the fd ``sink[0]`` as it comes; at its end the fd
        is closed and ``sink[0]`` set to -1."""
        stream = self.conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            dom.openConsole(None, stream, 0)
        except libvirt.libvirtError as exc:
            raise VmError(f"{dom.name()}: console: {exc.get_error_message()}") from exc
        stream.eventAddCallback(libvirt.VIR_STREAM_EVENT_READABLE |
                                libvirt.VIR_STREAM_EVENT_HANGUP |
                                libvirt.VIR_STREAM_EVENT_ERROR, _copy_console, sink)
        return stream

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.domainEventDeregisterAny(self._callback)
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()


def _copy_console(stream: libvirt.virStream, events: int, sink: list[int]) -> None:
    """In libvirt's event thread: what the console has, to the sink; at its end, close."""
    if sink[0] < 0:
        return
    data: bytes | int = b""
    with contextlib.suppress(libvirt.libvirtError):
        data = stream.recv(4096) if events & libvirt.VIR_STREAM_EVENT_READABLE else b""
    if data == -2:  # nothing after all (EAGAIN)
        return
    if isinstance(data, bytes) and data:
        with contextlib.suppress(OSError):
            os.write(sink[0], data)
        return
    with contextlib.suppress(libvirt.libvirtError):
        stream.eventRemoveCallback()
    os.close(sink[0])
    sink[0] = -1


def close_console(stream: libvirt.virStream) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        stream.eventRemoveCallback()
    with contextlib.suppress(libvirt.libvirtError):
        stream.abort()


def open_namespaces(dom: libvirt.virDomain) -> list[int]:
    """Fds of the init's namespaces (libvirt_lxc passes them over its socket), for setns."""
    try:
        return list(libvirt_lxc.lxcOpenNamespace(dom, 0))
    except libvirt.libvirtError as exc:
        raise VmError(f"{dom.name()}: namespaces: {exc.get_error_message()}") from exc


def controller_pid(dom: libvirt.virDomain) -> int:
    """libvirt_lxc's pid (the LXC driver's domain id): it sits in the domain's cgroups,
    beside the init it forked."""
    try:
        return dom.ID()
    except libvirt.libvirtError as exc:
        raise VmError(f"{dom.name()}: {exc.get_error_message()}") from exc


def destroy(dom: libvirt.virDomain) -> None:
    """Kill the container, fine if it is gone already; its libvirt_lxc log goes too."""
    name = dom.name()
    try:
        dom.destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN,
                                        libvirt.VIR_ERR_OPERATION_INVALID):
            raise VmError(f"{name}: destroy: {exc.get_error_message()}") from exc
    remove_log(name)


def remove_log(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (LOG_DIR / f"{name}.log").unlink()


def leftover_domains(uri: str = URI) -> list[str]:
    """The suite's running domains, by name (those a killed run's connection did not take
    with it)."""
    conn = open_connection(uri)
    try:
        return sorted(d.name() for d in conn.listAllDomains()
                      if d.name().startswith(NAME_PREFIX))
    finally:
        conn.close()


def destroy_by_name(name: str, uri: str = URI) -> None:
    conn = open_connection(uri)
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            remove_log(name)
            return
        destroy(dom)
    finally:
        conn.close()


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"
