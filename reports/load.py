"""Read run dirs into one pandas frame: one row per benchmark, with what the report needs
(metric, workload, backend, kind, unit, direction, statistics, values, definition).

Only the result files are read (``results.json`` through pyperf, ``manifest.json``); bad
input is one line naming the file.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyperf

from reports.errors import ReportError

FORMAT = "vmvc-run/1"  # the manifest format these reports read


@dataclass
class Run:
    path: Path
    manifest: dict
    suite: pyperf.BenchmarkSuite
    frame: pd.DataFrame

    @property
    def host(self) -> str:
        return str(self.manifest.get("host", {}).get("hostname", self.path.name))

    @property
    def label(self) -> str:
        """How this run is named in a multi-run report: its host, or its dir."""
        return f"{self.host} ({self.path.name})"

    @property
    def accelerator(self) -> str:
        return str(self.manifest.get("accelerator", {}).get("accelerator", "unknown"))


def load_run(path: Path) -> Run:
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (give a run dir made by vmvc run)")
    manifest_path = path / "manifest.json"
    results_path = path / "results.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as exc:
        raise ReportError(f"{manifest_path}: missing (not a vmvc run dir)") from exc
    except (OSError, ValueError) as exc:
        raise ReportError(f"{manifest_path}: not readable JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ReportError(f"{manifest_path}: format {found!r}, this report reads {FORMAT!r}")
    if not results_path.exists():
        raise ReportError(f"{results_path}: missing (the run finished no benchmark)")
    try:
        suite = pyperf.BenchmarkSuite.load(str(results_path))
    except Exception as exc:
        raise ReportError(f"{results_path}: not a pyperf results file "
                          f"({type(exc).__name__}: {str(exc)[:120]})") from exc
    return Run(path, manifest, suite, frame_of(suite, manifest))


def density_fit(benchmark: pyperf.Benchmark) -> tuple[float | None, float | None]:
    """Bytes per extra idle instance and the slope's standard error: least squares over every
    run's (N, used) point (the harness's own fit is per round; several rounds are fitted
    together here). Host memory readings move by megabytes on their own, so an instance that
    takes KiB has a slope within its error. No error with fewer than three points."""
    points = [(float(meta["vmvc_instances"]), v - float(meta.get("vmvc_before_bytes", 0)))
              for r in benchmark.get_runs() if "vmvc_instances" in (meta := r.get_metadata())
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


def frame_of(suite: pyperf.BenchmarkSuite, manifest: dict) -> pd.DataFrame:
    rows = []
    ratios = manifest.get("ratios", {})
    for benchmark in suite:
        name = benchmark.get_name()
        parts = name.split(":")
        if len(parts) != 3:
            continue
        meta = benchmark.get_metadata()
        values = list(benchmark.get_values())
        slope, slope_stderr = density_fit(benchmark) if parts[0] == "density" else (None, None)
        rows.append({
            "name": name, "metric": parts[0], "workload": parts[1], "backend": parts[2],
            "kind": meta.get("vmvc_kind", ""), "unit": meta.get("vmvc_unit", "s"),
            "better": meta.get("vmvc_better", "lower"),
            "definition": meta.get("vmvc_definition", ""),
            "accelerator": meta.get("vmvc_accelerator", ""),
            "mean": benchmark.mean(), "median": benchmark.median(),
            "stdev": benchmark.stdev() if len(values) > 1 else 0.0,
            "n": len(values), "values": values, "ratio_to_bare": ratios.get(name),
            "runs": [(r.get_metadata().get("vmvc_instances"),
                      [v - float(r.get_metadata().get("vmvc_before_bytes", 0)) for v in r.values])
                     for r in benchmark.get_runs()],
            "slope": slope, "slope_stderr": slope_stderr,
            "note": "; ".join(dict.fromkeys(  # each round's cap, once
                r.get_metadata()["vmvc_density_capped"] for r in benchmark.get_runs()
                if "vmvc_density_capped" in r.get_metadata())),
        })
    columns = ["name", "metric", "workload", "backend", "kind", "unit", "better", "definition",
               "accelerator", "mean", "median", "stdev", "n", "values", "ratio_to_bare", "runs",
               "slope", "slope_stderr", "note"]
    return pd.DataFrame(rows, columns=columns)
