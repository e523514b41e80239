"""vmvc-runtime: the built-in container runtime, with runc's command line.

usage: vmvc-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND

  spec [-b BUNDLE]                          write a default config.json
  create [-b BUNDLE] [--pid-file F] ID      create a container (its process waits for start)
  start ID                                  start a created container
  run [-b BUNDLE] [--pid-file F] [-d] [--keep] ID
                                            create + start (+ wait + delete unless -d)
  state ID                                  print the OCI state JSON
  kill ID [SIGNAL]                          signal the container's process (default SIGTERM)
  delete [-f|--force] ID                    delete a container (--force kills it first)
  list [-q] [-f table|json]                 list containers
  exec [-e K=V] [--cwd DIR] [-u UID[:GID]] [-d] [--pid-file F] ID CMD...
                                            run a process in a running container

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
VERBS = ("spec", "create", "start", "run", "state", "kill", "delete", "list", "exec")
UNSUPPORTED = ("--systemd-cgroup", "--rootless", "--console-socket", "--no-pivot", "--tty",
               "-t", "--preserve-fds")
SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15,
           "CONT": 18, "STOP": 19}
# flags that take a value, per verb ("" = global); the others are switches
VALUED = {"": {"--root", "--log", "--log-format"},
          "spec": {"-b", "--bundle"},
          "create": {"-b", "--bundle", "--pid-file"},
          "run": {"-b", "--bundle", "--pid-file"},
          "list": {"-f", "--format"},
          "exec": {"-e", "--env", "--cwd", "-u", "--user", "--pid-file"}}
SWITCHES = {"": {"--debug"}, "run": {"-d", "--detach", "--keep"}, "delete": {"-f", "--force"},
            "list": {"-q", "--quiet"}, "kill": {"-a", "--all"}, "exec": {"-d", "--detach"},
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
        if (scope == "exec" and args.positional and not word.startswith("-")) or word == "--":
            rest = argv[i:] if word == "--" else argv[i - 1:]
            args.positional += rest
            break
        if word.startswith("-") and len(word) > 1:
            name, eq, value = word.partition("=")
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
    if verb == "kill":
        cid = _container_id(args, extra=1)
        number = signal_number(args.positional[1] if len(args.positional) > 1 else "TERM")
        rt.kill(cid, number, every_process=args.has("-a", "--all"))
        return 0
    if verb == "exec":
        if len(args.positional) < 2:
            raise ContainerError("exec: give a container id and a command")
        pid_file = args.get("--pid-file")
        return rt.exec(args.positional[0], args.positional[1:], env=args.all("-e", "--env"),
                       cwd=args.get("--cwd"), user=args.get("-u", "--user"),
                       detach=args.has("-d", "--detach"), pid_file=pid_file)
    cid = _container_id(args)
    if verb == "create":
        rt.create(cid, args.get("-b", "--bundle", default="."), pid_file=args.get("--pid-file"),
                  new_keyring=not args.has("--no-new-keyring"))
    elif verb == "run":
        return _run(rt, cid, args)
    elif verb == "start":
        rt.start(cid)
    elif verb == "state":
        import json

        print(json.dumps(rt.state(cid), indent=2))
    elif verb == "delete":
        rt.delete(cid, force=args.has("-f", "--force"))
    return 0


def _run(rt, cid: str, args: Args) -> int:
    rt.create(cid, args.get("-b", "--bundle", default="."), pid_file=args.get("--pid-file"),
              new_keyring=not args.has("--no-new-keyring"))
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
        log = args.get("--log") if args else None
        if log:
            import json

            with open(log, "a") as handle:
                as_json = args.get("--log-format") == "json"
                handle.write(json.dumps({"level": "error", "msg": message}) + "\n" if as_json
                             else f"error: {message}\n")
        return 1


def entry() -> None:
    """The console script: exit without the interpreter's teardown (~2.5 ms of every call);
    nothing is left to flush but the standard streams."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
