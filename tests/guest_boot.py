"""Booting an image's kernel + initramfs + disk with QEMU directly (TCG), for image tests.

The VM driver boots through libvirt; these tests check the image itself: that the
initramfs hands over to the guest init and that the init starts the guest agent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from image.build import ImageArtifacts


class GuestAgent:
    """The qemu-guest-agent protocol over a unix socket: one JSON request, one reply."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        while True:
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.buffer = b""

    def _send(self, command: str, arguments: dict) -> None:
        request = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.sock.sendall(json.dumps(request).encode() + b"\n")

    def _reply(self, timeout: float) -> dict:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("guest agent channel closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, command: str, timeout: float, **arguments: object) -> object:
        self._send(command, arguments)
        reply = self._reply(timeout)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["return"]

    def sync(self, deadline: float) -> None:
        """Wait until the agent answers; drop the replies to earlier, unanswered tries.

        Replies come in request order, so the one matching the latest id means nothing
        older is still on its way.
        """
        token = 0
        while time.monotonic() < deadline:
            token += 1
            self._send("guest-sync", {"id": token})
            try:
                while self._reply(2).get("return") != token:
                    pass
                return
            except TimeoutError:
                continue
        raise TimeoutError("the guest agent never answered")

    def run(self, argv: list[str], timeout: float = 60) -> tuple[int, str]:
        started = self.call("guest-exec", 10, path=argv[0], arg=argv[1:],
                            **{"capture-output": True})
        pid = started["pid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.call("guest-exec-status", 10, pid=pid)
            if status["exited"]:
                import base64

                out = base64.b64decode(status.get("out-data", "")).decode()
                return status["exitcode"], out
            time.sleep(0.2)
        raise TimeoutError(f"{argv} did not finish in the guest")

    def close(self) -> None:
        self.sock.close()


@contextmanager
def booted(image: ImageArtifacts, workdir: Path, agent: bool = False,
           extra_append: str = "") -> Iterator[tuple[Path, Path | None]]:
    """Boot *image* under TCG; yield (serial log, agent socket); always kill QEMU."""
    serial = workdir / "serial.log"
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "1", "-nodefaults",
            "-no-user-config", "-display", "none", "-no-reboot", "-serial", f"file:{serial}",
            "-kernel", str(image.kernel), "-initrd", str(image.initramfs),
            "-append", f"console=ttyS0 panic=-1 {extra_append}".strip(),
            "-drive", f"file={image.disk},if=virtio,format=raw,snapshot=on"]
    sock = None
    if agent:
        sock = workdir / "agent.sock"
        argv += ["-device", "virtio-serial-pci",
                 "-chardev", f"socket,id=ga,path={sock},server=on,wait=off",
                 "-device", "virtserialport,chardev=ga,name=org.qemu.guest_agent.0"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        yield serial, sock
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def wait_for_line(log: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace") if log.exists() else ""
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not on the console in {timeout} s:\n{content[-2000:]}")
