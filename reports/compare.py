"""Two runs' shared benchmarks, B against A, with pyperf's significance test (Student's
two-sample t-test at 95 %, the one ``python -m pyperf compare_to`` applies), each figure
read in its own direction (``vmvc_better``), regressions first."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import pyperf


def differ_significantly(values_a: Sequence[float], values_b: Sequence[float]) -> bool:
    """Whether two samples differ beyond their noise, by pyperf's test; one value on a side
    cannot say."""
    from pyperf._utils import is_significant  # pinned: pyperf>=2.6,<3

    if len(values_a) < 2 or len(values_b) < 2:
        return False
    try:
        return bool(is_significant(values_a, values_b)[0])
    except ZeroDivisionError:  # no spread at all on either side
        return statistics.fmean(values_a) != statistics.fmean(values_b)


def compare(a: pyperf.BenchmarkSuite, b: pyperf.BenchmarkSuite) -> list[dict]:
    rows = []
    names_b = set(b.get_benchmark_names())
    for bench_a in a:
        name = bench_a.get_name()
        if name not in names_b:
            continue
        bench_b = b.get_benchmark(name)
        unit = bench_a.get_metadata().get("vmvc_unit", "s")
        if _measure(bench_a) != _measure(bench_b):  # e.g. a workload redefined in between
            rows.append({"name": name, "a": bench_a.mean(), "b": bench_b.mean(),
                         "change": None, "significant": False, "verdict": "not comparable",
                         "unit": unit, "unit_b": bench_b.get_metadata().get("vmvc_unit", "s")})
            continue
        significant = differ_significantly(bench_a.get_values(), bench_b.get_values())
        higher = bench_a.get_metadata().get("vmvc_better") == "higher"
        change = bench_b.mean() / bench_a.mean()
        improved = change > 1 if higher else change < 1
        rows.append({"name": name, "a": bench_a.mean(), "b": bench_b.mean(), "change": change,
                     "significant": significant,
                     "verdict": ("better" if improved else "worse") if significant
                     else "not significant",
                     "unit": unit, "unit_b": unit})
    rows.sort(key=lambda r: (r["verdict"] != "worse", r["verdict"] != "better", r["name"]))
    return rows


def _measure(benchmark: pyperf.Benchmark) -> tuple:
    """What a figure is, its unit and direction: two runs' figures compare only if equal
    (a wording change in a definition does not make figures incomparable)."""
    meta = benchmark.get_metadata()
    return tuple(meta.get(k) for k in ("vmvc_unit", "vmvc_better"))
