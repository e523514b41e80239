"""Read run dirs (through results/, the run dir's format) into one pandas frame: one row per
benchmark, with what the report needs (metric, workload, backend, kind, unit, direction,
statistics, values, definition).

Only the result files are read; bad input is one line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyperf

from reports.errors import ReportError
from results import MANIFEST, RESULTS, Manifest, density_fit, parse, read_manifest, read_suite
from results.density import steps


@dataclass
class Run:
    path: Path
    manifest: Manifest
    suite: pyperf.BenchmarkSuite
    frame: pd.DataFrame

    @property
    def host(self) -> str:
        return self.manifest.host.hostname or self.path.name

    @property
    def label(self) -> str:
        """How this run is named in a multi-run report: its host, or its dir."""
        return f"{self.host} ({self.path.name})"

    @property
    def accelerator(self) -> str:
        return self.manifest.accelerator.name


def load_run(path: Path) -> Run:
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (give a run dir made by vmvc run)")
    manifest = read_manifest(path / MANIFEST)
    suite = read_suite(path / RESULTS)
    return Run(path, manifest, suite, frame_of(suite, manifest.ratios))


def frame_of(suite: pyperf.BenchmarkSuite, ratios: dict[str, float]) -> pd.DataFrame:
    rows = []
    for benchmark in suite:
        name = benchmark.get_name()
        parts = parse(name)
        if parts is None:
            continue
        meta = benchmark.get_metadata()
        values = list(benchmark.get_values())
        audits = [_audit(name, run.get_metadata().get("vmvc_audit"))
                  for run in benchmark.get_runs()]
        slope, slope_stderr = density_fit(benchmark) if parts.metric == "density" \
            else (None, None)
        rows.append({
            "name": name, "metric": parts.metric, "workload": parts.workload,
            "backend": parts.backend,
            "kind": meta.get("vmvc_kind", ""), "unit": meta.get("vmvc_unit", "s"),
            "better": meta.get("vmvc_better", "lower"),
            "definition": meta.get("vmvc_definition", ""),
            "accelerator": meta.get("vmvc_accelerator", ""),
            "mean": benchmark.mean(), "median": benchmark.median(),
            "stdev": benchmark.stdev() if len(values) > 1 else 0.0,
            "n": len(values), "values": values, "ratio_to_bare": ratios.get(name),
            "runs": steps(benchmark),
            "slope": slope, "slope_stderr": slope_stderr,
            "note": "; ".join(dict.fromkeys(  # each round's cap, once
                r.get_metadata()["vmvc_density_capped"] for r in benchmark.get_runs()
                if "vmvc_density_capped" in r.get_metadata())),
            "audit": _with_variation(audits),
        })
    columns = ["name", "metric", "workload", "backend", "kind", "unit", "better", "definition",
               "accelerator", "mean", "median", "stdev", "n", "values", "ratio_to_bare", "runs",
               "slope", "slope_stderr", "note", "audit"]
    return pd.DataFrame(rows, columns=columns)


def _with_variation(audits: list[list[dict] | None]) -> list[dict] | None:
    """The last round's checks, each marked ``varied`` when some round answered otherwise
    (a reader must not take one round's answer for all of them)."""
    last = audits[-1] if audits else None
    if last is None:
        return None
    answers: dict[str, set[str]] = {}
    for audit in audits:
        for check in audit or []:
            answers.setdefault(check["name"], set()).add(check["answer"])
    return [{**check, "varied": len(answers[check["name"]]) > 1} for check in last]


def _audit(name: str, text: str | None) -> list[dict] | None:
    """An isolation benchmark's checks (its ``vmvc_audit`` metadata)."""
    if not text:
        return None
    try:
        checks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{name}: vmvc_audit is not JSON: {exc}") from exc
    if not isinstance(checks, list) or not all(
            isinstance(c, dict) and {"name", "question", "answer", "isolates", "evidence"}
            <= set(c) for c in checks):
        raise ReportError(f"{name}: vmvc_audit is not a list of checks")
    return checks
