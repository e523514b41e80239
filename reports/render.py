"""``vmvc report``: one self-contained HTML page (inline SVG charts, no script, no network)
or a Markdown summary, from one or more run dirs; the raw data (results.json,
manifest.json, a CSV of every benchmark) written beside it and linked."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pandas as pd

from reports import charts, isolation
from reports.compare import compare
from reports.load import Run, load_run
from reports.summary import GROUP, backends_of, claims, glance
from results import BACKEND_ORDER, MANIFEST, RESULTS, format_ratio, format_value

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=lambda name: bool(name and name.endswith(".html.j2")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["fmt"] = format_value
    env.filters["ratio"] = format_ratio
    env.globals["group"] = GROUP
    return env


def csv_export(runs: list[Run]) -> str:
    frames = []
    for run in runs:
        frame = run.frame.drop(columns=["values", "runs", "audit"]).copy()
        frame.insert(0, "run", run.label)
        frames.append(frame)
    return pd.concat(frames).to_csv(index=False)


def _raw_files(runs: list[Run], out_dir: Path) -> list[dict]:
    """results.json and manifest.json of each run beside the report (copied when the report
    is written elsewhere), with relative links."""
    files = []
    for index, run in enumerate(runs):
        for name in (RESULTS, MANIFEST):
            source = run.path / name
            if out_dir.resolve() == run.path.resolve():
                target = source
            else:
                prefix = f"run{index + 1}-"
                target = out_dir / f"{prefix}{name}"
                shutil.copyfile(source, target)
            files.append({"run": run.label, "name": name,
                          "href": os.path.relpath(target, out_dir)})
    return files


def network_up(frame: pd.DataFrame) -> list[dict]:
    """Each booting backend's "network up" phase (from its service boots, which have a NIC):
    median and count, for a line under the boot chart."""
    part = frame[(frame["metric"] == "boot-phase") & (frame["workload"] == "network_up")]
    return [{"backend": r["backend"], "median": format_value(float(r["median"]), "s"),
             "n": int(r["n"]),
             "definition": r["definition"]} for _, r in part.iterrows()]


def engine_costs(frame: pd.DataFrame) -> list[dict]:
    """Each engine's daemons (engine:idle.pss): the fixed memory its containers share."""
    part = frame[frame["metric"] == "engine"]
    return [{"backend": r["backend"], "median": format_value(float(r["median"]), "bytes"),
             "n": int(r["n"]), "definition": r["definition"]} for _, r in part.iterrows()]


def quick_limited(run: Run) -> dict[str, list[str]]:
    """Backends the quick suite ran only some metrics of: backend → the metrics left out
    (the manifest's ``<metric>:*:<backend>`` items)."""
    left: dict[str, list[str]] = {}
    for item in run.manifest.not_applicable:
        metric, workload, backend = [*item.benchmark.split(":"), "", ""][:3]
        if workload == "*":
            left.setdefault(backend, []).append(metric)
    return left


def context(runs: list[Run], baseline: Run | None) -> dict:
    sections = []
    for run in runs:
        frame = run.frame
        cost_isolation = isolation.cost_vs_isolation(frame)
        sections.append({
            "run": run, "glance": glance(run), "backends": backends_of(frame),
            "startup_svg": charts.startup_strip(frame), "phases_svg": charts.boot_phases(frame),
            "burst_svg": charts.burst(frame), "network_up": network_up(frame),
            "memory_svg": charts.idle_memory(frame), "density_svg": charts.density(frame),
            "engine_costs": engine_costs(frame),
            "density_notes": {r["backend"]: r["note"] for _, r in frame.iterrows()
                              if r["metric"] == "density" and r["note"]},
            "cost_svg": charts.isolation_cost(frame),
            "service_svgs": charts.service_latency(frame),
            "isolation": isolation.matrix(frame), "cost_isolation": cost_isolation,
            "cost_isolation_svg": charts.cost_vs_isolation(cost_isolation),
            "emulated": run.accelerator != "kvm" and "vm" in set(frame["backend"]),
            "failures": run.manifest.failures,
            "density_failures": [f for f in run.manifest.failures
                                 if f.benchmark.startswith("density:")],
            "skipped": {b: s.reason or "" for b, s in run.manifest.backends.items()
                        if s.status != "ok"},
            "not_applicable": run.manifest.not_applicable,
            "quick_limited": quick_limited(run),
        })
    against = None
    if baseline is not None:
        against = {"baseline": baseline, "rows": [
            {"run": run.label, **row} for run in runs
            for row in compare(baseline.suite, run.suite)]}
        against["rows"].sort(key=lambda r: (r["verdict"] != "worse", r["verdict"] != "better",
                                            r["name"]))
    return {"runs": runs, "sections": sections, "claims": claims(runs), "against": against,
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "backend_order": BACKEND_ORDER}


def render(run_dirs: list[Path], output: Path | None = None, fmt_name: str = "html",
           baseline_dir: Path | None = None) -> Path:
    """Write the report; its path. Nothing is left half-written: every file is written
    to a temporary name and renamed into place."""
    runs = [load_run(path) for path in run_dirs]
    baseline = load_run(baseline_dir) if baseline_dir is not None else None
    suffix = ".md" if fmt_name == "md" else ".html"
    output = output or run_dirs[0] / f"report{suffix}"
    out_dir = output.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _environment()
    values = context(runs, baseline)
    if fmt_name == "md":
        _write(output, env.get_template("summary.md.j2").render(**values))
        return output
    csv_path = output.with_suffix(".csv")
    _write(csv_path, csv_export(runs))
    values["raw"] = [*_raw_files(runs, out_dir),
                     {"run": "every run", "name": "CSV of every benchmark",
                      "href": csv_path.name}]
    _write(output, env.get_template("report.html.j2").render(**values))
    return output


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
