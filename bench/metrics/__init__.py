"""What a run measures, one module per metric (base.py says what a metric owns). The plan
takes their groups in this order; the pyperf worker and the harness find them here."""

from __future__ import annotations

from bench.metrics.base import Metric, PlanInputs, RunContext
from bench.metrics.boot_phases import BOOT_PHASES
from bench.metrics.burst import BURST
from bench.metrics.cost import COST
from bench.metrics.density import DENSITY
from bench.metrics.engine import ENGINE
from bench.metrics.isolation import ISOLATION
from bench.metrics.memory import MEMORY
from bench.metrics.startup import STARTUP

METRICS: dict[str, Metric] = {m.name: m for m in (STARTUP, BOOT_PHASES, MEMORY, ENGINE,
                                                  DENSITY, BURST, COST,
                                                  ISOLATION)}

__all__ = ["METRICS", "Metric", "PlanInputs", "RunContext"]
