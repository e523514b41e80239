"""The workloads every backend runs: the built-in six (bench/workloads/builtin/*.toml),
files dropped into $VMVC_WORKLOADS_DIR (or ~/.config/vmvc/workloads), and Python classes
registered under the ``vmvc.workloads`` entry point (a class with a ``workload()`` method
returning a :class:`Workload`)."""

from __future__ import annotations

import os
from importlib import metadata, resources
from pathlib import Path

from bench.errors import VmvcError
from bench.workloads.spec import Figure, Workload, parse_workload

__all__ = ["Figure", "Workload", "load_workloads", "workload_dirs"]
ENTRY_POINT_GROUP = "vmvc.workloads"


def workload_dirs() -> list[Path]:
    builtin = Path(str(resources.files("bench.workloads").joinpath("builtin")))
    user = os.environ.get("VMVC_WORKLOADS_DIR") or str(
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "vmvc" / "workloads")
    return [builtin, *(Path(p) for p in user.split(os.pathsep) if p)]


def load_workloads(dirs: list[Path] | None = None) -> dict[str, Workload]:
    """Every workload by name; a later directory's file replaces an earlier one's."""
    found: dict[str, Workload] = {}
    for directory in dirs if dirs is not None else workload_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                workload = parse_workload(path)
                found[workload.name] = workload
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            workload = entry.load()().workload()
        except Exception as exc:
            raise VmvcError(f"workload entry point {entry.name}: {exc}") from exc
        if not isinstance(workload, Workload):
            raise VmvcError(f"workload entry point {entry.name}: workload() must return a "
                            "bench.workloads.Workload")
        found[workload.name] = workload
    return found
