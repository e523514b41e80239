"""The harness's logic beside its real end-to-end tests (tests/test_harness.py): the plan's
order and alternation, the density fit, ratios, the compare verdicts, failure lines."""

from __future__ import annotations

from pathlib import Path

import pyperf
import pytest

from bench.backends.base import ExecOutcome, Instance
from bench.harness import measure
from bench.harness.plan import SUITES, build_plan
from bench.harness.runner import failure_line
from bench.harness.summary import cost_ratios
from bench.metrics.density import steps as density_steps
from bench.workloads import load_workloads
from reports.compare import compare
from results import fit_line


def test_plan_alternates_backends_and_rotates_each_round() -> None:
    tasks = build_plan(["bare", "builtin", "vm"], ["cpu"], SUITES["quick"], repeat=2)
    cost = [(t.round, t.backend) for t in tasks if t.metric == "cost"]
    assert cost == [(0, "bare"), (0, "builtin"), (0, "vm"), (1, "builtin"), (1, "vm"),
                    (1, "bare")]
    names = {t.name for t in tasks}
    assert "startup:ready:vm" not in names and "memory:idle:vm" not in names  # from its boots
    assert "startup:true:vm" in names and not any(t.metric == "density" for t in tasks)
    full = build_plan(["bare"], [], SUITES["full"], repeat=1)
    assert [t.name for t in full if t.metric == "density"] == ["density:idle:bare"]


def test_density_steps_double_up_to_the_cap() -> None:
    assert density_steps(32) == [1, 2, 4, 8, 16, 32]
    assert density_steps(6) == [1, 2, 4, 6]
    assert density_steps(1) == [1] and density_steps(0) == []


def test_fit_line_recovers_slope_and_intercept() -> None:
    points = [(n, 100.0 + 7.0 * n) for n in (1, 2, 4, 8)]
    slope, intercept = fit_line(points)
    assert slope == pytest.approx(7.0) and intercept == pytest.approx(100.0)
    assert fit_line([(2, 10.0)]) == (5.0, 0.0)


def _bench(name: str, values: list[float], better: str = "lower") -> pyperf.Benchmark:
    return pyperf.Benchmark([pyperf.Run(values, metadata={"name": name, "loops": 1,
                                                          "vmvc_better": better,
                                                          "vmvc_unit": "events/s"},
                                        collect_metadata=False)])


def test_cost_ratios_are_against_bare() -> None:
    suite = pyperf.BenchmarkSuite([_bench("cost:cpu:bare", [100, 100]),
                                   _bench("cost:cpu:vm", [50, 50]),
                                   _bench("startup:true:vm", [3, 3])])
    assert cost_ratios(suite) == {"cost:cpu:vm": 0.5}


def test_compare_reads_each_figure_in_its_direction() -> None:
    a = pyperf.BenchmarkSuite([_bench("cost:cpu:vm", [100, 101, 99], "higher"),
                               _bench("startup:true:vm", [3.0, 3.1, 2.9])])
    b = pyperf.BenchmarkSuite([_bench("cost:cpu:vm", [150, 151, 149], "higher"),
                               _bench("startup:true:vm", [4.0, 4.1, 3.9])])
    rows = {r["name"]: r for r in compare(a, b)}
    assert rows["cost:cpu:vm"]["verdict"] == "better"  # more events per second
    assert rows["startup:true:vm"]["verdict"] == "worse"  # slower to start
    same = {r["name"]: r for r in compare(a, a)}
    assert same["cost:cpu:vm"]["verdict"] == "not significant"


def test_a_redefined_figure_is_not_compared() -> None:
    """The syscall workload went from stress-ng's ops/s to dd's ns per call: a ratio of the
    two would read as a 98 % change."""
    a = pyperf.BenchmarkSuite([_bench("cost:syscall:vm", [1779, 1780, 1781], "higher")])
    newer = pyperf.Benchmark([pyperf.Run([1240, 1241, 1239], metadata={
        "name": "cost:syscall:vm", "loops": 1, "vmvc_better": "lower", "vmvc_unit": "ns"},
        collect_metadata=False)])
    (row,) = compare(a, pyperf.BenchmarkSuite([newer]))
    assert row["verdict"] == "not comparable" and row["change"] is None
    assert (row["unit"], row["unit_b"]) == ("events/s", "ns")


def test_failure_line_is_the_workers_exception(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_text("Traceback (most recent call last):\n  File x\n"
                   "bench.errors.VmvcError: cpu: exited 127: sysbench: not found\n"
                   "Traceback (most recent call last):\n"
                   "RuntimeError: /usr/bin/python3 failed with exit code 1\n")
    assert failure_line(log) == "cpu: exited 127: sysbench: not found"
    log.write_text("TypeError: bad operand\nRuntimeError: x failed with exit code 1\n")
    assert failure_line(log) == "TypeError: bad operand"


class _Canned(Instance):
    """An instance that answers with fixed output: the figure-reading logic alone."""

    def __init__(self, stdout: str, stderr: str) -> None:
        self.answer = ExecOutcome(0, stdout, stderr, 0.5)

    def exec(self, argv: list[str], timeout: float) -> ExecOutcome:
        return self.answer

    def memory(self):  # pragma: no cover - not used
        raise NotImplementedError

    def stop(self) -> None:
        pass


def test_figures_json_from_stdout_regex_from_both() -> None:
    workloads = load_workloads()
    fio = '{"jobs": [{"read": {"iops": 1234.5}}]}'
    assert measure.cost(_Canned(fio, "fio: note: a warning\n"), workloads["disk"],
                        "quick") == 1234.5
    stress = "stress-ng: metrc: [1] fork  1000  2.00  0.5  1.5  10612.34  500.0\n"
    assert measure.cost(_Canned("", stress), workloads["fork"], "quick") == \
        pytest.approx(10612.34)
    dd = ("1000000+0 records in\n1000000+0 records out\n"
          "1000000 bytes (1.0 MB, 977 KiB) copied, 0.401234 s, 2.5 MB/s\n")
    assert measure.cost(_Canned("", dd), workloads["syscall"], "full") == \
        pytest.approx(200.617)  # ns per system call: 0.401234 s / 2,000,000


def test_a_signal_waits_for_the_end_of_an_uninterruptible_section() -> None:
    import os
    import signal

    from bench.backends import base

    class Stop(Exception):
        pass

    def stop(signum: int) -> None:
        raise Stop(signum)

    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        base.defer_signals(stop)
        steps = []
        with pytest.raises(Stop), base.uninterruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("finished what it made")  # not cut short by the signal
        assert steps == ["finished what it made"]
        with pytest.raises(Stop):  # outside a section: at once
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
        base._raise = None


def test_significance_is_pyperfs_and_takes_samples_of_different_sizes() -> None:
    """Equal sizes: pyperf's own verdict; a full run's VM (5 values) beside a container (9)
    is compared too, where pyperf's test raises."""
    import random

    from pyperf._utils import is_significant

    from reports.compare import differ_significantly

    rng = random.Random(7)
    for shift in (0.0, 0.5, 1.0, 3.0):
        a = [rng.gauss(10, 1) for _ in range(9)]
        b = [rng.gauss(10 + shift, 1) for _ in range(9)]
        assert differ_significantly(a, b) == is_significant(a, b)[0]
    nine, five = [10.0 + 0.1 * i for i in range(9)], [20.0 + 0.1 * i for i in range(5)]
    assert differ_significantly(nine, five) and differ_significantly(five, nine)
    assert not differ_significantly(nine, [10.1, 10.5, 10.3, 10.6, 10.2])
    assert differ_significantly([1.0, 1.0], [2.0, 2.0]) and not differ_significantly([1.0], [2.0])
