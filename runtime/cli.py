"""vmvc-runtime: the built-in container runtime, with runc's command line.

usage: vmvc-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND

  spec [-b BUNDLE]                          write a default config.json
  create [-b BUNDLE] [--pid-file F] [--console-socket S] ID
                                            create a container (its process waits for start);
                                            process.terminal: its terminal is sent to S
  start ID                                  start a created container
  run [-b BUNDLE] [--pid-file F] [-d] [--keep] ID
                                            create + start (+ wait + delete unless -d)
  state ID                                  print the OCI state JSON
  kill ID [SIGNAL]                          signal the container's process (default SIGTERM)
  delete [-f|--force] ID                    delete a container (--force kills it first)
  list [-q] [-f table|json]                 list containers
  ps [-f table|json] ID [PS-OPTIONS]        the container's processes
  features                                  what this runtime implements (JSON)
  pause ID / resume ID                      freeze / thaw every process of the container
  update [-r FILE|-] [--memory N] [--cpu-quota N] [--pids-limit N] … ID
                                            change a running container's limits
  exec [-e K=V] [--cwd DIR] [-u UID[:GID]] [-d] [-t --console-socket S] [--pid-file F] ID CMD...
                                            run a process in a running container
  exec --process FILE [-d] [--pid-file F] ID
                                            the same, the whole process from a JSON file

The command line is parsed by hand and nothing heavy is imported (no argparse, pathlib,
pandas, matplotlib, libvirt, pyperf): the runtime's start-up time is measured.
"""

from __future__ import annotations

import os
import sys

from runtime.errors import ContainerError
from runtime.light import suppress
from runtime.trace import mark

DEFAULT_ROOT = "/run/vmvc-runtime"
VERBS = ("spec", "create", "start", "run", "state", "kill", "delete", "list", "exec", "ps",
         "features", "pause", "resume", "update")
UNSUPPORTED = ("--systemd-cgroup", "--rootless", "--no-pivot", "--preserve-fds")
SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15,
           "CONT": 18, "STOP": 19}
UPDATE_FLAGS = {  # runc update's flags: where each goes in linux.resources, and how to read it
    "memory": ("memory", "limit", "bytes"), "memory-reservation": ("memory", "reservation",
                                                                   "bytes"),
    "memory-swap": ("memory", "swap", "bytes"), "cpu-share": ("cpu", "shares", "int"),
    "cpu-quota": ("cpu", "quota", "int"), "cpu-period": ("cpu", "period", "int"),
    "cpuset-cpus": ("cpu", "cpus", "str"), "cpuset-mems": ("cpu", "mems", "str"),
    "pids-limit": ("pids", "limit", "int"),
}
# flags that take a value, per verb ("" = global); the others are switches
VALUED = {"": {"--root", "--log", "--log-format"},
          "spec": {"-b", "--bundle"},
          "create": {"-b", "--bundle", "--pid-file", "--console-socket"},
          "run": {"-b", "--bundle", "--pid-file", "--console-socket"},
          "list": {"-f", "--format"}, "ps": {"-f", "--format"},
          "update": {"-r", "--resources", *(f"--{flag}" for flag in UPDATE_FLAGS)},
          "exec": {"-e", "--env", "--cwd", "-u", "--user", "--pid-file", "-p", "--process",
                   "--console-socket"}}
SWITCHES = {"": {"--debug"}, "run": {"-d", "--detach", "--keep"}, "delete": {"-f", "--force"},
            "list": {"-q", "--quiet"}, "kill": {"-a", "--all"},
            "exec": {"-d", "--detach", "-t", "--tty"},
            "create": {"--no-new-keyring"}}
SWITCHES["run"] |= {"--no-new-keyring"}


class Args:
    """What the command line said: verb, options (long names), positionals."""

    def __init__(self) -> None:
        self.verb = ""
        self.options: dict[str, list[str]] = {}
        self.positional: list[str] = []

    def get(self, *names: str, default: str | None = None) -> str | None:
        for name in names:
            if name in self.options:
                return self.options[name][-1]
        return default

    def all(self, *names: str) -> list[str]:
        return [v for name in names for v in self.options.get(name, [])]

    def has(self, *names: str) -> bool:
        return any(name in self.options for name in names)


def parse(argv: list[str]) -> Args:
    args = Args()
    scope = ""
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if (scope == "exec" and args.positional and not word.startswith("-")) or word == "--" \
                or (scope == "ps" and args.positional):  # ps ID [ps options], as runc
            rest = argv[i:] if word == "--" else argv[i - 1:]
            args.positional += rest
            break
        if word.startswith("-") and len(word) > 1:
            name, eq, value = word.partition("=")
            if name == "--systemd-cgroup":
                raise ContainerError("--systemd-cgroup: " + (
                    "systemd does not run on this host; " if not os.path.isdir(
                        "/run/systemd/system") else "") + "vmvc-runtime manages cgroups "
                    "through cgroupfs only (drop the option, or set cgroup_manager=cgroupfs)")
            if name in UNSUPPORTED:
                raise ContainerError(f"{name} is not supported by vmvc-runtime")
            if name in VALUED.get(scope, ()) or (scope and name in VALUED[""]):
                if not eq:
                    if i >= len(argv):
                        raise ContainerError(f"{name} needs a value")
                    value = argv[i]
                    i += 1
                args.options.setdefault(name, []).append(value)
            elif name in SWITCHES.get(scope, ()) or name in SWITCHES[""]:
                args.options.setdefault(name, []).append("")
            else:
                raise ContainerError(f"unknown option {name}" + (f" for {scope}" if scope else ""))
        elif not scope:
            if word not in VERBS:
                raise ContainerError(f"unknown command {word!r} (one of: {', '.join(VERBS)})")
            scope = args.verb = word
        else:
            args.positional.append(word)
    return args


def signal_number(text: str) -> int:
    if text.isdigit():
        if not 1 <= int(text) <= 64:
            raise ContainerError(f"signal {text} is out of range (1..64)")
        return int(text)
    name = text.upper().removeprefix("SIG")
    if name in SIGNALS:
        return SIGNALS[name]
    import signal

    try:
        return int(getattr(signal.Signals, f"SIG{name}"))
    except AttributeError as exc:
        raise ContainerError(f"unknown signal {text!r}") from exc


def _container_id(args: Args, extra: int = 0) -> str:
    if len(args.positional) < 1 or (not extra and len(args.positional) > 1):
        raise ContainerError(f"{args.verb}: give one container id")
    return args.positional[0]


def run_command(args: Args) -> int:
    verb = args.verb
    if verb == "features":
        import json

        from runtime.features import features

        print(json.dumps(features(), indent=4))
        return 0
    if verb == "spec":
        from runtime.spec import spec_json

        path = os.path.join(args.get("-b", "--bundle", default="."), "config.json")
        if os.path.exists(path):
            raise ContainerError(f"{path} already exists")
        with open(path, "w") as handle:
            handle.write(spec_json())
        return 0
    from runtime.container import Runtime

    rt = Runtime(root=args.get("--root", default=DEFAULT_ROOT))
    if verb == "list":
        _list(rt.list(), args)
        return 0
    if verb == "ps":
        _ps(rt.pids(_container_id(args, extra=1)), args)
        return 0
    if verb == "kill":
        cid = _container_id(args, extra=1)
        number = signal_number(args.positional[1] if len(args.positional) > 1 else "TERM")
        rt.kill(cid, number, every_process=args.has("-a", "--all"))
        return 0
    if verb == "exec":
        process = args.get("-p", "--process")
        if process is not None:  # the whole process from a file, as containerd and conmon
            return _exec_process(rt, args, process)  # give it
        if len(args.positional) < 2:
            raise ContainerError("exec: give a container id and a command")
        pid_file = args.get("--pid-file")
        return rt.exec(args.positional[0], args.positional[1:], env=args.all("-e", "--env"),
                       cwd=args.get("--cwd"), user=args.get("-u", "--user"),
                       detach=args.has("-d", "--detach"), pid_file=pid_file,
                       console_socket=args.get("--console-socket"), tty=args.has("-t", "--tty"))
    cid = _container_id(args)
    if verb == "create":
        rt.create(cid, args.get("-b", "--bundle", default="."), pid_file=args.get("--pid-file"),
                  new_keyring=not args.has("--no-new-keyring"),
                  console_socket=args.get("--console-socket"))
    elif verb == "run":
        return _run(rt, cid, args)
    elif verb == "start":
        rt.start(cid)
    elif verb in ("pause", "resume"):
        rt.pause(cid, paused=verb == "pause")
    elif verb == "update":
        rt.update(cid, _update_resources(args))
    elif verb == "state":
        import json

        print(json.dumps(rt.state(cid), indent=2))
    elif verb == "delete":
        rt.delete(cid, force=args.has("-f", "--force"))
    return 0


def _exec_process(rt, args: Args, path: str) -> int:
    """``exec --process FILE ID``: the process.json an engine wrote (args, env, cwd, user,
    capabilities, rlimits, noNewPrivileges), checked as config.json's process is."""
    import json

    from runtime.config import parse_process

    if len(args.positional) != 1:
        raise ContainerError("exec --process: give the container id alone (the command is "
                             "the file's process.args)")
    if args.has("-e", "--env", "--cwd", "-u", "--user"):
        raise ContainerError("exec --process: the file gives env, cwd and user; drop the "
                             "options")
    try:
        with open(path) as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ContainerError(f"exec --process {path}: {exc}") from exc
    fields = parse_process(raw)
    for warning in fields.get("warnings", ()):  # type: ignore[union-attr]
        os.write(2, f"vmvc-runtime: warning: {path}: {warning}\n".encode())
    return rt.exec(args.positional[0], list(fields["args"]),  # type: ignore[call-overload]
                   detach=args.has("-d", "--detach"), pid_file=args.get("--pid-file"),
                   process_fields=fields, console_socket=args.get("--console-socket"))


def _run(rt, cid: str, args: Args) -> int:
    rt.create(cid, args.get("-b", "--bundle", default="."), pid_file=args.get("--pid-file"),
              new_keyring=not args.has("--no-new-keyring"),
              console_socket=args.get("--console-socket"))
    if args.has("-d", "--detach"):
        try:
            rt.start(cid)
        except BaseException:
            rt.delete(cid, force=True)
            raise
        return 0
    import _signal  # the C module: `signal` would import enum (start-up time)

    pid = rt.store.load(cid).pid

    def forward(signum: int, _frame: object) -> None:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in (SIGNALS["INT"], SIGNALS["TERM"], SIGNALS["HUP"], SIGNALS["QUIT"]):
        _signal.signal(signum, forward)
    try:
        rt.start(cid)
        code = rt.wait(cid)
        if code == 128 + SIGNALS["KILL"] and rt.oom_killed(cid):
            print(f"vmvc-runtime: container {cid}: killed by the OOM killer (memory limit "
                  "reached)", file=sys.stderr)
        return code
    finally:
        if not args.has("--keep"):
            rt.delete(cid, force=True)


def _update_resources(args: Args) -> dict:
    """linux.resources from ``-r FILE`` (``-`` for stdin, as containerd sends it) and the
    flags, the flags winning."""
    import json

    path = args.get("-r", "--resources")
    resources: dict = {}
    if path is not None:
        try:
            if path == "-":
                resources = json.load(sys.stdin)
            else:
                with open(path) as handle:
                    resources = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ContainerError(f"update --resources {path}: {exc}") from exc
    for flag, (section, key, kind) in UPDATE_FLAGS.items():
        value = args.get(f"--{flag}")
        if value is None:
            continue
        resources.setdefault(section, {})[key] = value if kind == "str" else \
            _bytes(value, flag) if kind == "bytes" else _integer(value, flag)
    if not resources:
        raise ContainerError("update: nothing to change (give --resources or a flag)")
    return resources


def _integer(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ContainerError(f"update --{flag} {text!r}: not a number") from None


def _bytes(text: str, flag: str) -> int:
    """A size as runc reads it: 33554432, 32m, 1g (binary units); -1: unlimited."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    body = text.lower().removesuffix("b").removesuffix("i")
    scale = units.get(body[-1:], 1)
    return _integer(body[:-1] if scale > 1 else body, flag) * scale


def _ps(pids: list[int], args: Args) -> None:
    """runc's ps: the container's processes (host pids) as a JSON list, or the rows of
    `ps -ef` (or the ps options given after the id) that are theirs."""
    if args.get("-f", "--format", default="table") == "json":
        import json

        print(json.dumps(pids))
        return
    import subprocess

    options = args.positional[1:] or ["-ef"]
    lines = subprocess.run(["ps", *options], capture_output=True, text=True, check=True,
                           timeout=30).stdout.splitlines()
    if not lines:
        return
    column = lines[0].split().index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            print(line)


def _list(states: list[dict], args: Args) -> None:
    if args.has("-q", "--quiet"):
        for state in states:
            print(state["id"])
    elif args.get("-f", "--format", default="table") == "json":
        import json

        print(json.dumps(states))
    else:
        print(f"{'ID':<24} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for s in states:
            print(f"{s['id']:<24} {s['pid']:<8} {s['status']:<10} {s['bundle']:<40} "
                  f"{s['created']}")


def main(argv: list[str] | None = None) -> int:
    mark("cli main")
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0] if argv else __doc__,
              file=sys.stdout if argv else sys.stderr)
        if not argv:
            print("vmvc-runtime: no command given", file=sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print("vmvc-runtime 0.1.0")
        return 0
    debug = "--debug" in argv
    args = None
    try:
        args = parse(argv)
        if not args.verb:
            raise ContainerError("no command given")
        return run_command(args)
    except Exception as exc:  # one line for the user; --debug shows the traceback
        if debug:
            raise
        if isinstance(exc, ContainerError):
            message = str(exc)
        elif isinstance(exc, OSError):
            message = f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}"
        else:
            message = f"internal error: {type(exc).__name__}: {exc}"
        print(f"vmvc-runtime: {message}", file=sys.stderr)
        log, log_format = (args.get("--log"), args.get("--log-format")) if args else \
            (_global_value(argv, "--log"), _global_value(argv, "--log-format"))
        if log:  # the engine shows what it finds here, a command line it could not parse too
            import json

            with open(log, "a") as handle:
                as_json = log_format == "json"
                handle.write(json.dumps({"level": "error", "msg": message}) + "\n" if as_json
                             else f"error: {message}\n")
        return 1


def _global_value(argv: list[str], name: str) -> str | None:
    """A global option's value read without the parser (when the parser is what failed):
    the last ``name VALUE`` or ``name=VALUE`` anywhere on the line."""
    found = None
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif word.startswith(f"{name}="):
            found = word.partition("=")[2]
    return found


def entry() -> None:
    """The console script: exit without the interpreter's teardown (~2.5 ms of every call);
    nothing is left to flush but the standard streams."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
