"""The isolation section: the audit's matrix (backends along the spectrum by checks, each
answer with its evidence) and the cost-versus-isolation view that puts each backend's
startup, idle memory and a workload's ratio to bare beside how many checks it passes."""

from __future__ import annotations

import pandas as pd

from reports.summary import GROUP
from results import backends_in_order
from results import format_value as fmt

COST_WORKLOADS = ("cpu", "syscall", "memory")  # the ratio shown: the first present


def matrix(frame: pd.DataFrame) -> dict | None:
    """{"checks": [(short, question)], "rows": [{backend, group, passed, total, cells}]},
    the backends in the spectrum's order; None without an audit in the run."""
    part = frame[(frame["metric"] == "isolation") & frame["audit"].notna()]
    if part.empty:
        return None
    by_backend = {r["backend"]: r["audit"] for _, r in part.iterrows()}
    checks: dict[str, tuple[str, str]] = {}
    for audit in by_backend.values():
        for check in audit:
            checks.setdefault(check["name"], (check.get("short", check["name"]),
                                              check["question"]))
    rows = []
    for backend in backends_in_order(by_backend):
        cells = {c["name"]: c for c in by_backend[backend]}
        rows.append({"backend": backend, "group": GROUP.get(backend, ""),
                     "passed": sum(bool(c["isolates"]) for c in cells.values()),
                     "total": len(cells), "cells": [cells.get(name) for name in checks]})
    varied = any(cell and cell.get("varied") for row in rows for cell in row["cells"])
    return {"checks": list(checks.values()), "rows": rows, "varied": varied}


def _median(frame: pd.DataFrame, metric: str, workload: str, backend: str) -> float | None:
    part = frame[(frame["metric"] == metric) & (frame["workload"] == workload)
                 & (frame["backend"] == backend)]
    return None if part.empty else float(part.iloc[0]["median"])


def cost_workload(frame: pd.DataFrame) -> str | None:
    """The workload whose ratio to bare the view shows: the first of COST_WORKLOADS that
    ran on bare, else the first such workload by name."""
    on_bare = set(frame.loc[(frame["metric"] == "cost") & (frame["backend"] == "bare"),
                            "workload"])
    return next((w for w in COST_WORKLOADS if w in on_bare), min(on_bare, default=None))


def cost_vs_isolation(frame: pd.DataFrame) -> dict | None:
    """Per audited backend: checks passed, startup to the exit of true, PSS of one idle
    instance, and the cost workload's figure over bare's (oriented so that above 1 is
    slower: bare's over its own when higher is better)."""
    table = matrix(frame)
    if table is None:
        return None
    workload = cost_workload(frame)
    rows = []
    for row in table["rows"]:
        backend = row["backend"]
        startup = _median(frame, "startup", "true", backend)
        memory = _median(frame, "memory", "idle.pss", backend)
        ratio = None
        if workload is not None:
            mine = _median(frame, "cost", workload, backend)
            bare = _median(frame, "cost", workload, "bare")
            better = frame.loc[(frame["metric"] == "cost") & (frame["workload"] == workload),
                               "better"].iloc[0]
            if mine and bare:
                ratio = bare / mine if better == "higher" else mine / bare
        rows.append({**row, "startup": startup, "startup_text": fmt(startup, "s"),
                     "memory": memory, "memory_text": fmt(memory, "bytes"),
                     "slowdown": ratio})
    return {"workload": workload, "rows": rows, "total": max(r["total"] for r in rows)}
