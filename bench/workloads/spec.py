"""A workload: a command run the same way on every backend, and how to read its figure.

Defined in TOML (one file per workload, dropped into a workloads directory)::

    name = "cpu"
    description = "sysbench CPU: primes, one thread"
    command = ["sysbench", "cpu", "--threads=1", "--time={seconds}", "run"]
    packages = ["sysbench"]              # extra Debian packages the image needs
    setup = ["iperf3", "-s", "-D"]       # optional, run first in the same instance
    # host_command = ["iperf3", "-c", "{address}"]  # instead of command: run on the host
    #   (the image's binaries, host network) against the instance's address on the
    #   suite's bridge; only backends with one run it

    [params.seconds]                     # placeholders in command/setup, per suite
    quick = 2
    full = 10

    [figure]
    kind = "regex"                       # wall | regex | json
    regex = 'events per second:\\s+([0-9.]+)'   # kind regex: group 1 is the figure
    # path = "jobs.0.read.iops"          # kind json: a dotted path into the output
    unit = "events/s"
    higher_is_better = true
    scale = 1.0                          # multiplies the figure (e.g. bit/s → Gbit/s)

Or several figures from one run of the command (a service's throughput and its latency
percentiles), each a table of its own under ``figures``, named by a lowercase word; each
becomes its own benchmark, ``cost:<workload>.<figure>:<backend>``::

    [figures.rps]
    kind = "regex"
    regex = '"GET","([0-9.]+)"'
    unit = "ops/s"
    higher_is_better = true
    [figures.p99]
    kind = "regex"
    regex = '"GET","[0-9.]+","[0-9.]+","[0-9.]+","[0-9.]+","([0-9.]+)"'
    unit = "s"                           # latencies in seconds: shown as µs/ms/s
    scale = 1e-3                         # the tool reports ms
    higher_is_better = false
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import VmvcError

UNITS = ("s", "ms", "ns", "events/s", "MiB/s", "IOPS", "Gbit/s", "ops/s")
KINDS = ("wall", "regex", "json")
SUITES = ("quick", "full")
SECONDS_IN = {"s": 1.0, "ms": 1e3, "ns": 1e9}  # a wall-time figure in its unit


@dataclass(frozen=True)
class Figure:
    kind: str
    unit: str
    higher_is_better: bool
    regex: re.Pattern[str] | None = None
    path: tuple[str, ...] = ()
    scale: float = 1.0

    def read(self, output: str, wall_seconds: float) -> float:
        """The figure from a run's output (or its wall time), in this figure's unit."""
        if self.kind == "wall":
            value = wall_seconds * SECONDS_IN.get(self.unit, 1.0)
        elif self.kind == "regex":
            assert self.regex is not None
            match = self.regex.search(output)
            if match is None:
                raise VmvcError(f"figure: /{self.regex.pattern}/ not found in the output")
            value = float(match.group(1))
        else:
            node: object = json.loads(output)
            for key in self.path:
                node = node[int(key)] if isinstance(node, list) else node[key]
            value = float(node)  # type: ignore[arg-type]
        return value * self.scale


MAIN = ""  # the figure of a workload with one ([figure]): its benchmark is cost:<workload>


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    command: list[str]
    figures: dict[str, Figure]  # {MAIN: …} for [figure]; by name for [figures.<name>]
    packages: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    params: dict[str, dict[str, object]] = field(default_factory=dict)
    source: str = ""
    host_command: list[str] = field(default_factory=list)

    @property
    def figure(self) -> Figure:
        """The one figure of a single-figure workload; a multi-figure one's first."""
        return next(iter(self.figures.values()))

    @property
    def several(self) -> bool:
        return MAIN not in self.figures

    def read(self, output: str, stdout: str, wall_seconds: float) -> dict[str, float]:
        """Every figure from one run: JSON from *stdout* alone (a warning on stderr must not
        break it), a regex from the whole *output* (stress-ng reports on stderr)."""
        return {name: figure.read(stdout if figure.kind == "json" else output, wall_seconds)
                for name, figure in self.figures.items()}

    def argv(self, suite: str, command: list[str] | None = None,
             address: str = "{address}") -> list[str]:
        """The command (or *command*) with the suite's parameter values filled in."""
        values = {name: by_suite[suite] for name, by_suite in self.params.items()}
        values["address"] = address
        return [word.format(**values) for word in (command if command is not None
                                                   else self.command)]


def _error(path: Path, where: str, what: str) -> VmvcError:
    return VmvcError(f"workload {path}: {where}: {what}")


def _strings(path: Path, data: dict, key: str, required: bool = False) -> list[str]:
    value = data.get(key)
    if value is None:
        if required:
            raise _error(path, key, "missing")
        return []
    if isinstance(value, str):
        value = ["/bin/sh", "-c", value] if key in ("command", "setup", "host_command") \
            else [value]
    may_be_empty = key == "packages"
    if not isinstance(value, list) or not (value or may_be_empty) or \
            not all(isinstance(v, str) for v in value):
        raise _error(path, key, "must be a non-empty list of strings (or a shell string)")
    return value


def parse_workload(path: Path) -> Workload:
    """Read and check one workload file; errors name the file and the field."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise VmvcError(f"workload {path}: {exc}") from exc
    known = {"name", "description", "command", "packages", "setup", "params", "figure",
             "figures", "host_command"}
    for key in data:
        if key not in known:
            raise _error(path, key, "unknown field")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise _error(path, "name", "missing or not a lowercase identifier")
    params: dict[str, dict[str, object]] = {}
    for pname, by_suite in (data.get("params") or {}).items():
        if not isinstance(by_suite, dict) or set(by_suite) != set(SUITES):
            raise _error(path, f"params.{pname}", f"give a value for each suite: {SUITES}")
        params[pname] = by_suite
    workload = Workload(
        name=name, description=str(data.get("description", "")),
        command=_strings(path, data, "command", required="host_command" not in data),
        figures=_figures(path, data),
        packages=_strings(path, data, "packages"), setup=_strings(path, data, "setup"),
        params=params, source=str(path), host_command=_strings(path, data, "host_command"))
    for suite in SUITES:  # every placeholder must have a value
        try:
            workload.argv(suite)
            workload.argv(suite, workload.setup)
            workload.argv(suite, workload.host_command)
        except (KeyError, IndexError, ValueError) as exc:
            raise _error(path, "command", f"placeholder {exc} has no params entry") from exc
    return workload


def _figures(path: Path, data: dict) -> dict[str, Figure]:
    if ("figure" in data) == ("figures" in data):
        raise _error(path, "figure", "give one [figure] table, or several [figures.<name>]")
    if "figure" in data:
        return {MAIN: _figure(path, data["figure"], "figure")}
    tables = data["figures"]
    if not isinstance(tables, dict) or not tables:
        raise _error(path, "figures", "a table of [figures.<name>] tables")
    for name in tables:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise _error(path, f"figures.{name}", "a figure's name is a lowercase word")
    return {name: _figure(path, table, f"figures.{name}") for name, table in tables.items()}


def _figure(path: Path, data: object, where: str) -> Figure:
    if not isinstance(data, dict):
        raise _error(path, where, "missing (a table with kind, unit, higher_is_better)")
    kind = data.get("kind")
    if kind not in KINDS:
        raise _error(path, f"{where}.kind", f"{kind!r}: choose one of {', '.join(KINDS)}")
    unit = data.get("unit", "s" if kind == "wall" else None)
    if unit not in UNITS:
        raise _error(path, f"{where}.unit",
                     f"{unit!r}: unknown unit (one of {', '.join(UNITS)})")
    if kind == "wall" and unit not in SECONDS_IN:
        raise _error(path, f"{where}.unit",
                     f"{unit!r}: a wall time is in {', '.join(SECONDS_IN)}")
    if not isinstance(data.get("higher_is_better", kind != "wall"), bool):
        raise _error(path, f"{where}.higher_is_better", "must be true or false")
    regex, json_path = None, ()
    if kind == "regex":
        try:
            regex = re.compile(str(data.get("regex", "")))
        except re.error as exc:
            raise _error(path, f"{where}.regex", f"bad regular expression: {exc}") from exc
        if regex.groups < 1 or not data.get("regex"):
            raise _error(path, f"{where}.regex", "needs one capturing group: the figure")
    if kind == "json":
        if not isinstance(data.get("path"), str) or not data["path"]:
            raise _error(path, f"{where}.path", "missing: a dotted path into the JSON output")
        json_path = tuple(data["path"].split("."))
    scale = data.get("scale", 1.0)
    if not isinstance(scale, int | float) or isinstance(scale, bool) or scale <= 0:
        raise _error(path, f"{where}.scale", "must be a positive number")
    return Figure(kind, unit, bool(data.get("higher_is_better", kind != "wall")), regex,
                  json_path, float(scale))
