"""The host's side of the audit: its own facts (what the probe's are compared with) and the
two marks the probe looks for, made for one probe and gone after it.

- a marker process in the host's PID namespace, named ``vmvc-audit-marker-<token>`` (a
  sleep under another name): an instance that finds it sees the host's processes;
- a TCP listener on the host's 127.0.0.1 that records the tokens it is sent: an instance
  whose token arrives reached the host's network stack (loopback only: nothing leaves the
  machine, and nothing but the probe's one line is read, bounded in size and time).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
from pathlib import Path

MARKER = "vmvc-audit-marker-"
ACCEPT_TIMEOUT = 1.0  # a connection's read, and the accept loop's tick
MAX_CONNECTIONS = 16  # a probe connects once; anything beyond this is not read


def host_facts() -> dict[str, str]:
    """The probe's keys that identify a kernel and its namespaces, as the host has them
    (read from this process: the harness runs in the host's namespaces)."""
    facts = {"boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
             "kernel": f"{os.uname().release} {os.uname().version}",
             "hostname": os.uname().nodename}
    facts["root_mount"] = root_mount(Path("/proc/self/mountinfo").read_text())
    for ns in ("pid", "mnt", "net", "uts", "user"):
        facts[f"ns_{ns}"] = os.readlink(f"/proc/self/ns/{ns}")
    return facts


class HostMarks:
    """The marker process and the loopback listener, for one probe (a context manager)."""

    def __init__(self, lifetime: float = 120.0) -> None:
        self.lifetime = lifetime  # the marker's, should the harness be killed meanwhile
        self.token = secrets.token_hex(8)
        self.received: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(ACCEPT_TIMEOUT)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._marker: subprocess.Popen | None = None

    def __enter__(self) -> HostMarks:
        try:
            self._marker = subprocess.Popen([MARKER + self.token, f"{self.lifetime:.0f}"],
                                            executable="/bin/sleep",
                                            stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            self._thread.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(ACCEPT_TIMEOUT * 3)
        self._server.close()
        if self._marker is not None:
            self._marker.kill()
            self._marker.wait()
            self._marker = None

    @property
    def reached(self) -> bool:
        return self.token in self.received

    def _serve(self) -> None:
        for _ in range(MAX_CONNECTIONS * 1000):  # bounded: ticks of ACCEPT_TIMEOUT at most
            if self._stop.is_set() or len(self.received) >= MAX_CONNECTIONS:
                return
            try:
                connection, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            with connection:
                connection.settimeout(ACCEPT_TIMEOUT)
                try:
                    self.received.append(connection.recv(64).decode(errors="replace").strip())
                except OSError:
                    continue


def root_mount(mountinfo: str) -> str:
    """The device (major:minor) and the root within it of the mount seen at "/" (the last
    one stacked there), as the probe's awk prints it."""
    seen = ""
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            seen = f"{fields[2]} {fields[3]}"
    return seen
