"""Commands in the guest through the real qemu-guest-agent, via libvirt's agent API
(guest-exec and guest-exec-status): stdout, stderr and exit code back; a timeout kills the
command in the guest and leaves the VM usable."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

import libvirt
import libvirt_qemu

from vmdriver.errors import VmError

POLL_FIRST, POLL_MAX = 0.005, 0.1


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None when killed on timeout and the agent gave no code
    stdout: str
    stderr: str
    timed_out: bool = False
    seconds: float = 0.0


def agent_call(dom: libvirt.virDomain, command: str, timeout: int = 10, **arguments: object):
    """One guest-agent command; its "return" value."""
    request = {"execute": command, **({"arguments": arguments} if arguments else {})}
    try:
        reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(request), timeout, 0)
    except libvirt.libvirtError as exc:
        raise VmError(f"guest agent {command} on {dom.name()}: {exc.get_error_message()}") \
            from exc
    return json.loads(reply).get("return")


def _decode(status: dict, key: str) -> str:
    return base64.b64decode(status.get(key, "")).decode(errors="replace")


def guest_exec(dom: libvirt.virDomain, argv: list[str], timeout: float = 60.0,
               stdin: bytes | None = None) -> ExecResult:
    """Run *argv* in the guest and wait for it, at most *timeout* seconds; *stdin* is its
    standard input (None: none)."""
    if not argv:
        raise VmError("guest command: nothing to run")
    start = time.monotonic()
    # in a session of its own: a timeout kills the whole process group, not just its leader
    given = {} if stdin is None else {"input-data": base64.b64encode(stdin).decode()}
    pid = agent_call(dom, "guest-exec", path="/bin/busybox", arg=["setsid", *argv],
                     **{"capture-output": True}, **given)["pid"]
    deadline = start + timeout
    delay = POLL_FIRST
    while True:
        status = agent_call(dom, "guest-exec-status", pid=pid)
        if status.get("exited"):
            code = status.get("exitcode")
            if code is None and status.get("signal") is not None:
                code = 128 + int(status["signal"])
            return ExecResult(code, _decode(status, "out-data"), _decode(status, "err-data"),
                              False, time.monotonic() - start)
        if time.monotonic() >= deadline:
            return _kill(dom, pid, start)
        time.sleep(delay)
        delay = min(delay * 2, POLL_MAX)


def _kill(dom: libvirt.virDomain, pid: int, start: float) -> ExecResult:
    """SIGKILL the timed-out command inside the guest, collect what it left."""
    killer = agent_call(dom, "guest-exec", path="/bin/busybox",
                        arg=["kill", "-9", "--", f"-{pid}"])["pid"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = agent_call(dom, "guest-exec-status", pid=pid)
        if status.get("exited"):
            agent_call(dom, "guest-exec-status", pid=killer)  # collect the kill itself
            return ExecResult(None if status.get("exitcode") is None else status["exitcode"],
                              _decode(status, "out-data"), _decode(status, "err-data"), True,
                              time.monotonic() - start)
        time.sleep(0.02)
    raise VmError(f"guest command {pid} on {dom.name()} survived SIGKILL")
