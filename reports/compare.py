"""Two runs' shared benchmarks, B against A, with pyperf's significance test (Student's
two-sample t-test at 95 %, the one ``python -m pyperf compare_to`` applies), each figure
read in its own direction (``vmvc_better``), regressions first."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import pyperf


def differ_significantly(values_a: Sequence[float], values_b: Sequence[float]) -> bool:
    """Whether two samples differ beyond their noise: pyperf's test (Student's two-sample,
    two-tailed t-test at 95 %), with the pooled variance weighted for samples of different
    sizes (pyperf's own refuses them: a full run's VM has 5 values beside 9 of a
    container). One value on a side cannot say."""
    from pyperf._utils import tdist95conf_level  # pinned: pyperf>=2.6,<3

    n_a, n_b = len(values_a), len(values_b)
    if n_a < 2 or n_b < 2:
        return False
    mean_a, mean_b = statistics.fmean(values_a), statistics.fmean(values_b)
    pooled = (math.fsum((x - mean_a) ** 2 for x in values_a)
              + math.fsum((x - mean_b) ** 2 for x in values_b)) / (n_a + n_b - 2)
    error = math.sqrt(pooled * (1 / n_a + 1 / n_b))
    if error == 0:  # no spread at all on either side
        return mean_a != mean_b
    return abs(mean_a - mean_b) / error >= tdist95conf_level(n_a + n_b - 2)


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
