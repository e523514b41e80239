"""What every metric is: a kind of benchmark that owns its plan rule (which workloads and
backends it measures), its time estimate, its definition and metadata, and how it runs
(pyperf's worker processes, or fixed counts in the harness's own process).

Metrics ask backends what they can do (:class:`bench.backends.base.Backend`'s capabilities:
``ready``, ``expensive``, ``boot_phases``, ``bridge``); nothing outside a metric or a backend
switches on a metric's or a backend's name. Adding a metric is one module in this package
and one line in its ``METRICS`` (see burst.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyperf

from bench.backends.base import Backend, BackendContext, Instance
from bench.harness.plan import Counts, Suite, Task
from bench.workloads import Workload
from results import parse

if TYPE_CHECKING:
    from pyperf import Runner

Group = tuple[str, list[str]]  # a workload and the backends measuring it, in the user's order


@dataclass(frozen=True)
class PlanInputs:
    """What the plan is made from: usable backends (classes, so capabilities can be asked),
    the selected workloads, which of them run from the host side, the suite's counts."""

    backends: list[type[Backend]]
    workloads: list[str]
    suite: Suite
    host_side: frozenset[str] = frozenset()
    bridged: frozenset[str] = frozenset()


@dataclass
class RunContext:
    """What a metric needs of the run that is going on."""

    suite: Suite
    suite_name: str
    workloads: dict[str, Workload]
    accelerator: str
    backend_context: BackendContext | None = None
    pyperf: Callable[[Task, Counts, dict], pyperf.Benchmark] | None = None

    @property
    def boot_seconds(self) -> float:
        """A VM boot, roughly: the ETA's weight for expensive instances."""
        return 6.0 if self.accelerator == "tcg" else 2.0


class Metric:
    name = ""
    unit, pyperf_unit, better = "s", "second", "lower"

    # -- the plan ----------------------------------------------------------------------
    def groups(self, plan: PlanInputs) -> list[Group]:
        """The (workload, backends) groups this metric adds to the plan, in order."""
        raise NotImplementedError

    def not_applicable(self, plan: PlanInputs) -> list[dict]:
        """Benchmarks the plan leaves out on purpose, each with its reason (the manifest)."""
        return []

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        """Rough seconds the task takes: the progress bar's ETA weight."""
        raise NotImplementedError

    # -- what it records ---------------------------------------------------------------
    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        raise NotImplementedError

    def figure(self, task: Task, run: RunContext) -> tuple[str, str, str]:
        """(unit, pyperf's unit, better) of the task's values."""
        return self.unit, self.pyperf_unit, self.better

    def metadata(self, task: Task, backend: Backend, run: RunContext, name: str | None = None,
                 definition: str | None = None) -> dict:
        """The pyperf metadata of one benchmark this task makes (``vmvc_*`` keys)."""
        name = name or task.name
        unit, pyperf_unit, better = self.figure(task, run)
        parsed = parse(name)
        assert parsed is not None, name
        metadata = {
            "name": name, "unit": pyperf_unit, "vmvc_metric": self.name,
            "vmvc_workload": parsed.workload, "vmvc_backend": backend.name,
            "vmvc_kind": backend.kind, "vmvc_unit": unit, "vmvc_better": better,
            "vmvc_definition": definition or self.definition(task, backend, run) or "-",
            "vmvc_round": task.round,
        }
        if backend.kind == "vm":
            metadata["vmvc_accelerator"] = run.accelerator if run.accelerator == "kvm" \
                else "tcg (emulated)"
        return metadata

    def benchmarks(self, task: Task, backend: Backend, run: RunContext) -> dict[str, dict]:
        """Name → metadata of every benchmark the task adds runs to."""
        return {task.name: self.metadata(task, backend, run)}

    def key(self, task: Task, run: RunContext) -> str:
        """The benchmark that says the task ran (its rounds are the task's): progress shows
        it, resume looks for it."""
        return task.name

    # -- how it runs -------------------------------------------------------------------
    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        """Measure: in this process, or through ``run.pyperf`` (the worker processes)."""
        raise NotImplementedError

    def bench(self, runner: Runner, spec: dict, backend: Backend, context: BackendContext,
              made: list[Instance]) -> None:
        """In a pyperf worker: register the benchmark's time function with *runner*;
        instances kept between values go into *made* (stopped when the worker ends)."""
        raise NotImplementedError(f"{self.name} does not run in pyperf's workers")
