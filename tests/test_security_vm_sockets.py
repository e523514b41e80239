"""The VM driver's host side of the guest (issue 11, part of item 9): the marker listener
keeps a bounded buffer however a guest floods its port, and a VM's sockets (and disk) sit
in 0700 dirs no host user can enter.

The guest here is a fake: a unix socket the test listens on, as QEMU listens on the marker
socket (``<source mode='bind'>``); tests/test_vm_driver.py boots real guests through the
same listener.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmdriver import vm as vm_module
from vmdriver.vm import MARKER_LINE_MAX, NAME_PREFIX

NOBODY = 65534
FLOOD_BYTES = 64 << 20


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A dir every host user may pass (as /var/lib is): only the modes under it protect."""
    top = Path(tempfile.mkdtemp(prefix="vmvc-sec-vm-", dir="/var/tmp"))
    os.chmod(top, 0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def fake_guest(path: Path) -> tuple[socket.socket, vm_module._Watch]:
    """QEMU's side of the marker socket, and the driver's watcher connected to it."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(10)
    watch = vm_module._Watch(f"{NAME_PREFIX}fake", path.parent / "serial.log", path)
    watch.begin()
    try:
        guest, _ = server.accept()
    finally:
        server.close()
    guest.settimeout(5)
    return guest, watch


def test_a_guest_flooding_the_marker_port_is_cut_off(reachable: Path) -> None:
    """A line that never ends: the host stops at MARKER_LINE_MAX and drops the connection
    (the boot then fails with that reason) instead of growing its buffer."""
    guest, watch = fake_guest(reachable / "marker.sock")
    sent, cut = 0, False
    chunk = b"x" * 65536
    deadline = time.monotonic() + 20
    try:
        while sent < FLOOD_BYTES and time.monotonic() < deadline:
            sent += guest.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        cut = True
    except TimeoutError:
        pass  # the host stopped reading but kept the connection
    finally:
        guest.close()
        watch.finish()
    assert cut and "marker_overflow" in watch.times, (sent, watch.times)
    # what the host took: one line's cap and a read, plus what the sockets buffer
    buffered = 2 * socket.socket(socket.AF_UNIX).getsockopt(socket.SOL_SOCKET,
                                                           socket.SO_SNDBUF)
    assert sent <= MARKER_LINE_MAX + 2 * 4096 + buffered + len(chunk), sent


def test_marker_lines_still_count_when_split_across_writes(reachable: Path) -> None:
    guest, watch = fake_guest(reachable / "marker.sock")
    try:
        for piece in (b"init-", b"started\nnot-a-", b"marker\nno-", b"agent\n"):
            guest.sendall(piece)
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while "no_agent" not in watch.times and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        guest.close()
        watch.finish()
    assert {"init_started", "no_agent"} <= set(watch.times)
    assert "marker_overflow" not in watch.times


def connect_as_nobody(path: Path) -> int:
    """errno of a real unprivileged host user's connect() to the unix socket *path*."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
        except OSError as exc:
            code = exc.errno or 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_vm_sockets_are_in_0700_dirs_even_on_an_older_installation(
        reachable: Path) -> None:
    """The dir of all VMs made 0755 by an older version is made 0700 on use; a socket in a
    VM's dir, open to all by its own mode, is then out of a host user's reach."""
    vms = reachable / "vms"
    vms.mkdir()
    os.chmod(vms, 0o755)
    workdir = vms / f"{NAME_PREFIX}test"
    lock_fd = vm_module._claim_workdir(workdir)
    try:
        assert stat.S_IMODE(vms.stat().st_mode) == 0o700
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(workdir / "marker.sock"))
            os.chmod(workdir / "marker.sock", 0o777)
            listener.listen(1)
            assert connect_as_nobody(workdir / "marker.sock") == errno.EACCES
    finally:
        os.close(lock_fd)
