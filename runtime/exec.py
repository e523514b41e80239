"""``exec``: another process in a running container, joining its namespaces and cgroup and
getting the same hardening (capabilities, no_new_privs, seccomp) as the container's own.

A forked helper joins the namespaces (setns into a mount namespace needs a single-threaded
caller, which a fresh fork is) and forks the process itself, which lands in the PID
namespace; the helper waits for it and exits with its status.
"""

from __future__ import annotations

import os
import sys

from runtime import cgroups
from runtime.config import Spec
from runtime.errors import ContainerError
from runtime.light import suppress
from runtime.linux import (
    NAMESPACE_FLAGS,
    NAMESPACE_PROC,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    Linux,
)
from runtime.process import finish_and_exec
from runtime.state import State, open_pidfd

JOIN_ORDER = ("user", "ipc", "uts", "network", "cgroup", "pid", "mount")


def _resolve_user(user: str | None, spec: Spec) -> tuple[int, int]:
    if user is None:
        return spec.uid, spec.gid
    uid_text, _, gid_text = user.partition(":")
    if not uid_text.isdigit() or (gid_text and not gid_text.isdigit()):
        raise ContainerError(f"exec --user {user!r}: give uid[:gid] as numbers")
    return int(uid_text), int(gid_text) if gid_text else int(uid_text)


def _namespace_fds(state: State, kinds: list[str], linux: Linux) -> dict[str, int]:
    """The init's namespaces, opened by PID and then proven to be its own: the pidfd
    (opened first, checked against the init's start time) still names a live process
    after the opens, so the PID was not reused by another process in between."""
    pidfd = open_pidfd(state, linux)
    fds: dict[str, int] = {}
    try:
        for kind in kinds:
            fds[kind] = os.open(f"/proc/{state.pid}/ns/{NAMESPACE_PROC[kind]}",
                                os.O_RDONLY | os.O_CLOEXEC)
        linux.pidfd_send_signal(pidfd, 0)
    except OSError as exc:
        for fd in fds.values():
            os.close(fd)
        raise ContainerError(f"container {state.id} is not running") from exc
    finally:
        os.close(pidfd)
    return fds


def exec_in(state: State, spec: Spec, args: list[str], linux: Linux, *,
            env: list[str] | None = None, cwd: str | None = None, user: str | None = None,
            detach: bool = False, pid_file: str | os.PathLike | None = None,
            stdio: tuple[int, int, int] | None = None, seccomp_cache: str = "",
            process_fields: dict | None = None, console_socket: str | None = None,
            tty: bool = False) -> int:
    """*process_fields* (``exec --process``): the whole process, as an engine gives it
    (its env is the whole environment, its user, capabilities and rlimits its own);
    otherwise the container's, with *args*, *env* added, *cwd* and *user*."""
    if process_fields is not None:
        from runtime.account_files import with_home

        process = spec.replace(**process_fields)
        process.env = with_home(process.env, f"/proc/{state.pid}/root", process.uid)
    else:
        uid, gid = _resolve_user(user, spec)
        for item in env or []:
            if "=" not in item:
                raise ContainerError(f"exec --env {item!r} is not NAME=VALUE")
        process = spec.replace(args=args, env=[*spec.env, *(env or [])],
                               cwd=cwd or spec.cwd, uid=uid, gid=gid)
    process.terminal = process.terminal if process_fields is not None else tty
    console_fd = -1
    terminal = process.terminal or console_socket is not None
    if terminal:
        from runtime import console  # here: once in the container, the library is gone

        console.check(process.terminal, console_socket)
    namespaces = [kind for kind in JOIN_ORDER if kind in spec.namespaces]
    seccomp = None
    if spec.seccomp is not None:
        from runtime.seccomp import cached_bpf

        seccomp = cached_bpf(spec.seccomp, seccomp_cache)
    fds = _namespace_fds(state, namespaces, linux)
    try:
        if terminal:
            console_fd = console.connect(str(console_socket))
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    read_fd, write_fd = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(read_fd)
        try:
            # Before the first setns: a container process must never open this fork of
            # the host's interpreter through /proc (its exe, fds, memory).
            linux.prctl(PR_SET_DUMPABLE, 0)
            if stdio is not None:
                for target, fd in enumerate(stdio):
                    os.dup2(fd, target)
            cgroups.at(state.cgroup).add(os.getpid())
            for kind in namespaces:
                linux.setns(fds[kind], NAMESPACE_FLAGS[kind])
            child = os.fork()
            if child == 0:
                linux.setsid()  # never the caller's terminal as controlling tty
                if console_fd >= 0:  # the container's own devpts: the mount ns is joined
                    slave, _ = console.open_in_container(console_fd, process.console_size,
                                                         linux.fstatfs_type)
                    console.become_stdio(slave)
                for resource_id, soft, hard in process.rlimits:
                    linux.setrlimit(resource_id, soft, hard)
                if process.no_new_privileges:
                    linux.prctl(PR_SET_NO_NEW_PRIVS, 1)
                finish_and_exec(process, seccomp, [], linux)
                os._exit(127)
            os.write(write_fd, f"{child}\n".encode())
            if detach:
                os._exit(0)
            _, status = os.waitpid(child, 0)
            os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status)
                     else os.waitstatus_to_exitcode(status))
        except BaseException as exc:
            print(f"vmvc-runtime: exec: {exc}", file=sys.stderr, flush=True)
            os._exit(125)
    os.close(write_fd)
    for fd in [*fds.values(), *([console_fd] if console_fd >= 0 else [])]:
        os.close(fd)
    with os.fdopen(read_fd) as pipe:
        child_pid = pipe.readline().strip()
    _, status = os.waitpid(helper, 0)
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else \
        os.waitstatus_to_exitcode(status)
    if pid_file is not None and child_pid:
        with suppress(OSError), open(pid_file, "w") as handle:
            handle.write(child_pid)
    if code == 125 and not child_pid:
        raise ContainerError(f"exec in container {state.id} failed")
    return code
