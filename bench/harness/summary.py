"""Figures derived from results.json: each cost benchmark against bare's, and one line
per benchmark for the terminal."""

from __future__ import annotations

import pyperf


def _parts(name: str) -> tuple[str, str, str]:
    metric, workload, backend = name.split(":", 2)
    return metric, workload, backend


def cost_ratios(suite: pyperf.BenchmarkSuite) -> dict[str, float]:
    """``cost:<w>:<backend>`` → its mean over bare's mean for the same workload (the tool's
    figure divided: above 1 is more of it, better when the figure is higher-is-better)."""
    means = {b.get_name(): b.mean() for b in suite}
    ratios = {}
    for name, mean in sorted(means.items()):
        metric, workload, backend = _parts(name)
        bare = means.get(f"{metric}:{workload}:bare")
        if metric == "cost" and backend != "bare" and bare:
            ratios[name] = round(mean / bare, 4)
    return ratios


def describe(benchmark: pyperf.Benchmark) -> str:
    """Median ± stdev in the figure's own unit, for a progress line or a table."""
    meta = benchmark.get_metadata()
    if meta.get("vmvc_metric") == "density":  # values are host readings; the slope is the figure
        counts = sorted({r.get_metadata().get("vmvc_instances") for r in benchmark.get_runs()})
        slope = meta.get("vmvc_slope_bytes")
        return (f"{slope / 2**20:.3g} MiB per idle instance (N = "
                f"{', '.join(str(n) for n in counts)})" if slope is not None
                else f"{len(counts)} steps, slopes differ by round")
    values = benchmark.get_values()
    median = benchmark.median()
    spread = benchmark.stdev() if len(values) > 1 else 0.0
    unit = meta.get("vmvc_unit", "s")
    if unit == "s":
        scale, shown = (1e3, "ms") if median < 1 else (1.0, "s")
    elif unit == "bytes":
        scale, shown = 1 / 2**20, "MiB"
    else:
        scale, shown = 1.0, unit
    return f"{median * scale:.4g} ± {spread * scale:.2g} {shown} ({len(values)} values)"
