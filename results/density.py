"""The density fit: bytes per extra idle instance, the least-squares slope of host memory
in use against the number N of idle instances. Each density run holds one step: its value
is the reading with N running, ``vmvc_before_bytes`` the one just before they started."""

from __future__ import annotations

import math
import statistics

import pyperf

INSTANCES = "vmvc_instances"
BEFORE = "vmvc_before_bytes"


def fit_line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares slope and intercept of used bytes against N (one round's steps)."""
    if len(points) < 2:
        n, used = points[0]
        return used / n, 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / \
        sum((x - mean_x) ** 2 for x in xs)
    return slope, mean_y - slope * mean_x


def steps(benchmark: pyperf.Benchmark) -> list[tuple[int | None, list[float]]]:
    """Each run's N and the bytes its instances took (value minus the reading before)."""
    return [(r.get_metadata().get(INSTANCES),
             [v - float(r.get_metadata().get(BEFORE, 0)) for v in r.values])
            for r in benchmark.get_runs()]


def density_fit(benchmark: pyperf.Benchmark) -> tuple[float | None, float | None]:
    """Bytes per extra idle instance and the slope's standard error: least squares over every
    run's (N, used) point (the harness's own fit is per round; several rounds are fitted
    together here). Host memory readings move by megabytes on their own, so an instance that
    takes KiB has a slope within its error. No error with fewer than three points."""
    points = [(float(meta[INSTANCES]), v - float(meta.get(BEFORE, 0)))
              for r in benchmark.get_runs() if INSTANCES in (meta := r.get_metadata())
              for v in r.values]
    if len({x for x, _ in points}) < 2:
        return (points[0][1] / points[0][0], None) if points else (None, None)
    xs, ys = [x for x, _ in points], [y for _, y in points]
    slope, intercept = statistics.linear_regression(xs, ys)
    if len(points) < 3:
        return slope, None
    mean_x = statistics.fmean(xs)
    residuals = sum((y - intercept - slope * x) ** 2 for x, y in points)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return slope, math.sqrt(residuals / (len(points) - 2) / spread)
