"""vmvc-runtime: the built-in container runtime, with runc's command line.

  vmvc-runtime [--root DIR] spec | create [--bundle B] [--pid-file F] ID | start ID |
               run [--bundle B] [-d] ID | state ID | kill ID [SIGNAL] |
               delete [--force] ID | list | exec ID CMD...

Kept import-light (no pandas, matplotlib, libvirt, pyperf): its start-up time is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from runtime.errors import ContainerError
from runtime.trace import mark

DEFAULT_ROOT = "/run/vmvc-runtime"


def _signal_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError as exc:
        raise ContainerError(f"unknown signal {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmvc-runtime", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=DEFAULT_ROOT,
                        help="directory for container state (default: %(default)s)")
    parser.add_argument("--log", help="also append errors to this file (runc compatible)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--debug", action="store_true", help="tracebacks for failures")
    parser.add_argument("--systemd-cgroup", action="store_true",
                        help="not supported (refused)")
    parser.add_argument("--version", action="version", version="vmvc-runtime 0.1.0")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")

    spec = verbs.add_parser("spec", help="write a default config.json")
    spec.add_argument("-b", "--bundle", default=".")
    spec.add_argument("--rootless", action="store_true", help="not supported (refused)")

    for name in ("create", "run"):
        verb = verbs.add_parser(name, help=f"{name} a container from an OCI bundle")
        verb.add_argument("id")
        verb.add_argument("-b", "--bundle", default=".")
        verb.add_argument("--pid-file")
        verb.add_argument("--console-socket", help="not supported (refused)")
        verb.add_argument("--no-pivot", action="store_true", help="not supported (refused)")
        verb.add_argument("--no-new-keyring", action="store_true")
        verb.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            verb.add_argument("-d", "--detach", action="store_true")
            verb.add_argument("--keep", action="store_true")

    for name, text in (("start", "start a created container"), ("state", "print OCI state")):
        verbs.add_parser(name, help=text).add_argument("id")
    kill = verbs.add_parser("kill", help="send a signal to the container's process")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    kill.add_argument("-a", "--all", action="store_true")
    delete = verbs.add_parser("delete", help="delete a container")
    delete.add_argument("id")
    delete.add_argument("-f", "--force", action="store_true")
    listing = verbs.add_parser("list", help="list containers")
    listing.add_argument("-f", "--format", choices=("table", "json"), default="table")
    listing.add_argument("-q", "--quiet", action="store_true")
    execute = verbs.add_parser("exec", help="run a process in a running container")
    execute.add_argument("id")
    execute.add_argument("command", nargs=argparse.REMAINDER)
    execute.add_argument("-e", "--env", action="append", default=[])
    execute.add_argument("--cwd")
    execute.add_argument("-u", "--user")
    execute.add_argument("-d", "--detach", action="store_true")
    execute.add_argument("-t", "--tty", action="store_true", help="not supported (refused)")
    execute.add_argument("--pid-file")
    return parser


def _refuse(args: argparse.Namespace) -> None:
    for flag, on in (("--systemd-cgroup", args.systemd_cgroup),
                     ("--rootless", getattr(args, "rootless", False)),
                     ("--console-socket", getattr(args, "console_socket", None)),
                     ("--no-pivot", getattr(args, "no_pivot", False)),
                     ("--tty", getattr(args, "tty", False))):
        if on:
            raise ContainerError(f"{flag} is not supported by vmvc-runtime")
    if getattr(args, "preserve_fds", 0):
        raise ContainerError("--preserve-fds is not supported by vmvc-runtime")


def _runtime(args: argparse.Namespace):
    from runtime.container import Runtime

    return Runtime(root=Path(args.root))


def run_command(args: argparse.Namespace) -> int:
    _refuse(args)
    verb = args.verb
    if verb == "spec":
        from runtime.spec import spec_json

        path = Path(args.bundle) / "config.json"
        if path.exists():
            raise ContainerError(f"{path} already exists")
        path.write_text(spec_json())
        return 0
    rt = _runtime(args)
    if verb == "create":
        rt.create(args.id, Path(args.bundle), pid_file=Path(args.pid_file) if args.pid_file
                  else None)
        return 0
    if verb == "run":
        return _run(rt, args)
    if verb == "start":
        rt.start(args.id)
    elif verb == "state":
        print(json.dumps(rt.state(args.id), indent=2))
    elif verb == "kill":
        rt.kill(args.id, _signal_number(args.signal))
    elif verb == "delete":
        rt.delete(args.id, force=args.force)
    elif verb == "list":
        _list(rt.list(), args)
    elif verb == "exec":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            raise ContainerError("exec: no command given")
        return rt.exec(args.id, command, env=args.env, cwd=args.cwd, user=args.user,
                       detach=args.detach,
                       pid_file=Path(args.pid_file) if args.pid_file else None)
    return 0


def _run(rt, args: argparse.Namespace) -> int:
    pid_file = Path(args.pid_file) if args.pid_file else None
    rt.create(args.id, Path(args.bundle), pid_file=pid_file)
    if args.detach:
        try:
            rt.start(args.id)
        except BaseException:
            rt.delete(args.id, force=True)
            raise
        return 0
    state = rt.store.load(args.id)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    try:
        rt.start(args.id)
        code = rt.wait(args.id)
        if code == 128 + signal.SIGKILL and rt.oom_killed(args.id):
            print(f"vmvc-runtime: container {args.id}: killed by the OOM killer (memory limit "
                  "reached)", file=sys.stderr)
        return code
    finally:
        if not args.keep:
            rt.delete(args.id, force=True)


def _list(states: list[dict], args: argparse.Namespace) -> None:
    if args.quiet:
        for state in states:
            print(state["id"])
    elif args.format == "json":
        print(json.dumps(states))
    else:
        print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for s in states:
            print(f"{s['id']:<20} {s['pid']:<8} {s['status']:<10} {s['bundle']:<40} {s['created']}")


def main(argv: list[str] | None = None) -> int:
    mark('cli main')
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_usage(sys.stderr)
        print("vmvc-runtime: no command given", file=sys.stderr)
        return 2
    try:
        return run_command(args)
    except (ContainerError, OSError) as exc:
        if args.debug:
            raise
        message = str(exc) if isinstance(exc, ContainerError) else \
            f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}"
        print(f"vmvc-runtime: {message}", file=sys.stderr)
        if args.log:
            with open(args.log, "a") as log:
                log.write(json.dumps({"level": "error", "msg": message}) + "\n"
                          if args.log_format == "json" else f"error: {message}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
