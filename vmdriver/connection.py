"""The libvirt connection, with libvirt's event loop registered before it is opened (the
lifecycle and agent events that time a boot arrive through it)."""

from __future__ import annotations

import threading

import libvirt

from vmdriver.errors import VmError

DEFAULT_URI = "qemu:///system"
_loop_lock = threading.Lock()
_loop_running = False


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:
            continue


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation once and run it in a daemon thread."""
    global _loop_running
    with _loop_lock:
        if not _loop_running:
            libvirt.virEventRegisterDefaultImpl()
            threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
            _loop_running = True


def open_connection(uri: str = DEFAULT_URI) -> libvirt.virConnect:
    """A read-write connection to *uri*; a failure is one line naming the URI."""
    ensure_event_loop()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors come as exceptions
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise VmError(f"cannot connect to libvirt at {uri}: {exc.get_error_message()} "
                      "(make setup starts libvirtd)") from exc
    try:
        conn.setKeepAlive(5, 3)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:  # a driver in this process
            return conn  # (test:///default): no link to keep alive
        conn.close()
        raise VmError(f"libvirt at {uri}: keepalive: {exc.get_error_message()}") from exc
    return conn
