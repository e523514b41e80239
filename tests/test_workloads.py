"""Workloads: the built-ins run for real (in a container of the full image) and give a
figure, read as the harness reads it; the README's worked example is loaded from the README
and run; bad files are one line naming the file and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.backends import BackendContext
from bench.backends.bare import BareBackend
from bench.backends.builtin import BuiltinBackend
from bench.errors import VmvcError
from bench.harness import measure
from bench.workloads import Workload, load_workloads
from bench.workloads.spec import UNITS, parse_workload
from image.build import ImageArtifacts
from paths import BENCH_WORKDIR
from tests.conftest import DUO

REPO = Path(__file__).resolve().parent.parent
BUILTIN = ("cpu", "memory", "syscall", "fork", "disk", "net", "net-bridge")
SERVICES = ("rr", "redis", "redis-1", "http", "db")  # server inside, client on the host


def run_in_container(workload: Workload, image: ImageArtifacts,
                     tmp_path: Path) -> dict[str, float]:
    """Setup then command in one container of the image (the built-in runtime), the figure
    read as the harness reads it (bench.harness.measure.cost); a workload with a host side
    gets its container on the suite's bridge and the image's client on the host."""
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    context = BackendContext(image.oci_layout, image.disk, image.kernel, image.initramfs,
                             BENCH_WORKDIR)
    bridged = bool(workload.host_command)
    with BuiltinBackend(context).start(network="bridge" if bridged else "none") as instance:
        if not bridged:
            return measure.figures(instance, workload, "quick")
        with BareBackend(context).host_side(instance) as host:
            return measure.figures(instance, workload, "quick", host)


def test_the_builtins_are_there() -> None:
    workloads = load_workloads()
    assert set(BUILTIN) | set(SERVICES) <= set(workloads)
    for name in BUILTIN:
        figure = workloads[name].figure
        assert figure.unit in UNITS and figure.higher_is_better == (figure.unit != "ns")
    for name in SERVICES:  # throughputs up, latencies (in seconds) down
        assert workloads[name].several and workloads[name].host_command
        for figure in workloads[name].figures.values():
            assert figure.higher_is_better == (figure.unit != "s")


@pytest.mark.parametrize("name", BUILTIN + SERVICES)
def test_builtin_runs_and_gives_its_figure(name: str, full_image: ImageArtifacts,
                                          tmp_path: Path) -> None:
    workload = load_workloads()[name]
    figures = run_in_container(workload, full_image, tmp_path)
    assert set(figures) == set(workload.figures) and all(v > 0 for v in figures.values())
    if name == "syscall":  # ns per read or write of one byte: a kernel entry, not a process
        assert 20 < figures[""] < 10_000
    if name == "rr":  # a TCP round trip through a veth and back: µs, not ms
        assert figures["p50"] <= figures["p99"] <= figures["p999"] <= figures["max"] < 1.0
        assert 1e-6 < figures["p50"] < 5e-3
    if name.startswith("redis"):
        assert figures["get_p50"] <= figures["get_p99"] <= figures["get_max"]
    if name == "db":  # read-only transactions of a few queries each: ms, not seconds
        assert figures["avg"] <= figures["max"] and figures["p99"] <= figures["max"] < 5.0


def test_readme_worked_example(full_image: ImageArtifacts, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Workloads"):]
    example = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    workloads_dir = tmp_path / "workloads"
    workloads_dir.mkdir()
    (workloads_dir / "gzip.toml").write_text(example)
    workload = load_workloads([workloads_dir])["gzip"]
    assert workload.figure.kind == "wall" and workload.argv("quick")[-1].startswith("head -c 1")
    milliseconds = run_in_container(workload, full_image, tmp_path)[""]
    assert 0 < milliseconds < 60_000


def test_readmes_service_example_runs_on_the_bridge(full_image: ImageArtifacts,
                                                    tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("A service of your own"):]
    example = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    (tmp_path / "redis-ping.toml").write_text(example)
    workload = load_workloads([tmp_path])["redis-ping"]
    assert workload.several and workload.host_command
    figures = run_in_container(workload, full_image, tmp_path)
    assert figures["rps"] > 100 and 0 < figures["p50"] < 1.0


def test_a_server_that_never_listens_fails_in_one_line(tiny_image: ImageArtifacts,
                                                       tmp_path: Path) -> None:
    """The setup's own wait gives up: one line with the server's last words, and nothing
    stays (the session's leak checks: the container, its veth, its lease)."""
    path = tmp_path / "deaf.toml"
    path.write_text('''name = "deaf"
setup = "echo 'deaf: cannot bind {address}:9' >&2; exit 1"
host_command = ["true"]
[figures.rps]
kind = "regex"
regex = "rps=([0-9]+)"
unit = "ops/s"
''')
    with pytest.raises(VmvcError) as caught:
        run_in_container(parse_workload(path), tiny_image, tmp_path)
    message = str(caught.value)
    assert message.startswith("deaf: setup exited 1: deaf: cannot bind 10.88.") and \
        "\n" not in message


GOOD = '''name = "x"
command = ["true"]
[figure]
kind = "regex"
regex = '([0-9]+)'
unit = "ops/s"
higher_is_better = true
'''
BAD = {
    "bad-regex": (GOOD.replace("'([0-9]+)'", "'([0-9]+'"), "figure.regex"),
    "no-group": (GOOD.replace("'([0-9]+)'", "'[0-9]+'"), "figure.regex"),
    "missing-command": (GOOD.replace('command = ["true"]\n', ""), "command: missing"),
    "unknown-unit": (GOOD.replace('"ops/s"', '"furlongs"'), "figure.unit"),
    "wall-time-as-a-rate": (GOOD.replace('"regex"', '"wall"'), "figure.unit"),
    "unknown-field": ("speed = 3\n" + GOOD, "speed: unknown field"),
    "placeholder-without-param": (GOOD.replace('["true"]', '["sleep", "{n}"]'), "command"),
    "param-without-suite": (GOOD + "[params.n]\nquick = 1\n", "params.n"),
    "figure-and-figures": (GOOD + "[figures.a]\nkind = 'wall'\n", "figure: give one"),
    "no-figure": (GOOD[:GOOD.index("[figure]")], "figure: give one"),
    "figure-name": (GOOD.replace("[figure]", "[figures.P99]"), "figures.P99"),
    "bad-figure-of-several": (GOOD.replace("[figure]", "[figures.rps]")
                              .replace('"ops/s"', '"furlongs"'), "figures.rps.unit"),
}


def test_several_figures_from_one_run(tiny_image: ImageArtifacts, tmp_path: Path) -> None:
    """Each figure read from the one output of the run, in its own unit, in file order."""
    path = tmp_path / "duo.toml"
    path.write_text(DUO)
    workload = parse_workload(path)
    assert workload.several and list(workload.figures) == ["rps", "p99"]
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    context = BackendContext(tiny_image.oci_layout, tiny_image.disk, tiny_image.kernel,
                             tiny_image.initramfs, BENCH_WORKDIR)
    with BuiltinBackend(context).start() as instance:
        figures = measure.figures(instance, workload, "quick")
    assert figures == {"rps": 1234.5, "p99": pytest.approx(0.25e-3)}


@pytest.mark.parametrize("case", BAD)
def test_bad_workload_file_names_file_and_field(case: str, tmp_path: Path) -> None:
    text, field = BAD[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(VmvcError) as caught:
        parse_workload(path)
    message = str(caught.value)
    assert str(path) in message and field in message and "\n" not in message


def test_the_good_file_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    assert parse_workload(path).figure.read("rate 42 ok", 0) == 42
