"""Figures derived from results.json: each cost benchmark against bare's, and one line
per benchmark for the terminal."""

from __future__ import annotations

import pyperf

from results import compose, parse, scale_of


def cost_ratios(suite: pyperf.BenchmarkSuite) -> dict[str, float]:
    """``cost:<w>:<backend>`` → its mean over bare's mean for the same workload (the tool's
    figure divided: above 1 is more of it, better when the figure is higher-is-better)."""
    means = {b.get_name(): b.mean() for b in suite}
    ratios = {}
    for name, mean in sorted(means.items()):
        parts = parse(name)
        if parts is None or parts.metric != "cost" or parts.backend == "bare":
            continue
        bare = means.get(compose(parts.metric, parts.workload, "bare"))
        if bare:
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
    scale, shown = scale_of(median, meta.get("vmvc_unit", "s"))
    return f"{median * scale:.4g} ± {spread * scale:.2g} {shown} ({len(values)} values)"
