"""The run dir, the contract between ``vmvc run`` and its readers (``vmvc report``,
``vmvc compare``, pyperf's CLI): file names, format version, the typed manifest, benchmark
names, units, the density fit, the order of backends and boot phases. Only the standard
library and pyperf: it runs nothing."""

from results.density import density_fit, fit_line
from results.errors import ResultsError
from results.manifest import (
    FORMAT,
    Accelerator,
    BackendStatus,
    Failure,
    Host,
    HostCheck,
    Image,
    Manifest,
    NotApplicable,
    Settings,
    WorkloadFacts,
)
from results.names import METRICS, BenchmarkName, compose, parse
from results.order import BACKEND_ORDER, BOOT_PHASES, backends_in_order
from results.rundir import LOGS, MANIFEST, RESULTS, RunDir, atomic_write, read_manifest, read_suite
from results.runs import RunClock
from results.units import BYTES, SECONDS, format_ratio, format_value, pyperf_unit, scale_of

__all__ = [
    "BACKEND_ORDER", "BOOT_PHASES", "BYTES", "FORMAT", "LOGS", "MANIFEST", "METRICS", "RESULTS",
    "SECONDS",
    "Accelerator", "BackendStatus", "BenchmarkName", "Failure", "Host", "HostCheck", "Image",
    "Manifest", "NotApplicable", "ResultsError", "RunClock", "RunDir", "Settings",
    "WorkloadFacts", "atomic_write", "backends_in_order", "compose", "density_fit",
    "fit_line", "format_ratio", "format_value", "parse", "pyperf_unit", "read_manifest",
    "read_suite", "scale_of",
]
