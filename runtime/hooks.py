"""The OCI lifecycle hooks (runtime-spec config.md, "POSIX-platform Hooks"), run as runc
runs them: each hook's program with its args and env, the container's state as JSON on its
stdin, killed when its timeout passes.

Where each kind runs and what its failure does:

- prestart (deprecated), createRuntime: during create, once the namespaces exist and before
  pivot_root, in the runtime's namespaces. A failure fails the create.
- createContainer: right after, in the container's namespaces (its mount namespace before
  pivot_root, so the path resolves as the runtime sees it). A failure fails the create.
- startContainer: run by the container's init itself once start lets it go, after
  pivot_root and with the container's identity (user, capabilities) applied, right before
  its process: the path resolves in the container, and a program of the image never runs
  with more than the container's own privileges (runc's order). A failure ends the init
  before its process runs.
- poststart: once the process runs, before start returns; poststop: after delete. Their
  failures are warnings.

Docker relies on a prestart hook: with ``--network none`` (and with its own networks),
dockerd's ``libnetwork-setkey`` hook configures the container's network namespace.
Hooks join the container's namespaces but its PID namespace (a second fork would be needed
for that, and no hook has needed it).
"""

from __future__ import annotations

import os
import time

from runtime.config import Hook
from runtime.errors import ContainerError
from runtime.light import suppress
from runtime.linux import NAMESPACE_FLAGS, NAMESPACE_PROC, Linux

FATAL = ("prestart", "createRuntime", "createContainer", "startContainer")
JOIN_ORDER = ("user", "ipc", "uts", "network", "cgroup", "mount")  # the mount ns last
SIGKILL = 9


def state_json(state: dict) -> bytes:
    import json

    return json.dumps(state).encode()


def run(kind: str, hooks: list[Hook], state: dict, linux: Linux, *,
        join_pid: int | None = None, namespaces: tuple[str, ...] = ()) -> list[str]:
    """Run *hooks* of *kind* in order. With *join_pid*: in that process's *namespaces*.
    Returns warnings (poststart, poststop); raises on a failure of the fatal kinds."""
    warnings = []
    data = state_json(state)
    for i, hook in enumerate(hooks):
        problem = _run_one(hook, data, linux, join_pid, namespaces)
        if problem is None:
            continue
        message = f"hooks.{kind}[{i}] ({hook.path}): {problem}"
        if kind in FATAL:
            raise ContainerError(message)
        warnings.append(message)
    return warnings


def _run_one(hook: Hook, data: bytes, linux: Linux, join_pid: int | None,
             namespaces: tuple[str, ...]) -> str | None:
    fds: dict[str, int] = {}
    # the state in a memory file, not a pipe: a hook that never reads its stdin cannot
    # block the runtime, whatever the state's size, and its timeout holds
    state = os.memfd_create("oci-state", os.MFD_CLOEXEC)
    try:
        os.write(state, data)
        os.lseek(state, 0, os.SEEK_SET)
        for kind in JOIN_ORDER if join_pid else ():
            if kind in namespaces:
                fds[kind] = os.open(f"/proc/{join_pid}/ns/{NAMESPACE_PROC[kind]}",
                                    os.O_RDONLY | os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the hook: stdin the state, the runtime's stdout and stderr
            try:
                os.dup2(state, 0)
                for kind, fd in fds.items():
                    linux.setns(fd, NAMESPACE_FLAGS[kind])
                env = dict(e.split("=", 1) for e in hook.env if "=" in e)
                os.execve(hook.path, hook.args or [hook.path], env)
            except BaseException as exc:
                with suppress(Exception):
                    os.write(2, f"vmvc-runtime: hook {hook.path}: {exc}\n".encode())
            os._exit(127)
    except OSError as exc:
        return f"could not be started: {exc.strerror or exc}"
    finally:
        os.close(state)
        for fd in fds.values():
            os.close(fd)
    return _wait(pid, hook.timeout)


def _wait(pid: int, timeout: int | None) -> str | None:
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return f"killed by signal {os.WTERMSIG(status)}"
            code = os.waitstatus_to_exitcode(status)
            return None if code == 0 else f"exited with status {code}"
        if deadline is not None and time.monotonic() > deadline:
            with suppress(ProcessLookupError):
                os.kill(pid, SIGKILL)
            os.waitpid(pid, 0)
            return f"timed out after {timeout} s"
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
