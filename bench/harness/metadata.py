"""What each benchmark records about itself (pyperf metadata, ``vmvc_*`` keys): metric,
workload, backend, the figure's unit and direction, and how it was measured."""

from __future__ import annotations

from bench.backends.base import Backend
from bench.harness.plan import Task
from bench.workloads import Workload
from results import parse, pyperf_unit

DENSITY_DEFINITION = ("host memory in use (MemTotal - MemAvailable) with N idle instances "
                      "running (each run's value; the reading just before they started is "
                      "its vmvc_before_bytes); slope of the difference per instance by "
                      "least squares")


def benchmark_metadata(task: Task, backend: Backend, workload: Workload | None,
                       accelerator: str, name: str | None = None,
                       definition: str | None = None) -> dict:
    name = name or task.name
    parsed = parse(name)
    assert parsed is not None, name
    metric = parsed.metric
    if metric in ("startup", "boot-phase"):
        unit, better = "s", "lower"
        definition = definition or (backend.startup_definition if task.workload == "true"
                                    else backend.ready_definition)
    elif metric in ("memory", "density"):
        unit, better = "bytes", "lower"
        definition = definition or (DENSITY_DEFINITION if metric == "density"
                                    else backend.memory_definition)
    else:
        assert workload is not None
        unit, better = workload.figure.unit, \
            "higher" if workload.figure.higher_is_better else "lower"
        definition = definition or (
            f"{workload.description}: {workload.figure.kind} figure"
            + (f" ({workload.figure.unit})" if workload.figure.kind != "wall" else "")
            + ", one fresh run of the command per value in one instance of the backend")
    metadata = {
        "name": name, "unit": pyperf_unit(unit), "vmvc_metric": metric,
        "vmvc_workload": parsed.workload, "vmvc_backend": backend.name,
        "vmvc_kind": backend.kind, "vmvc_unit": unit, "vmvc_better": better,
        "vmvc_definition": definition or "-", "vmvc_round": task.round,
    }
    if backend.kind == "vm":
        metadata["vmvc_accelerator"] = accelerator if accelerator == "kvm" else "tcg (emulated)"
    return metadata
