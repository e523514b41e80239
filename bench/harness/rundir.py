"""A run dir: ``results.json`` (one pyperf BenchmarkSuite) and ``manifest.json``, each
rewritten whole and renamed into place after every task, so a killed run leaves the last
finished task's state and nothing half-written. results.json is the record of what is
done: every run carries the round it belongs to (``vmvc_round``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyperf

from bench.errors import VmvcError

FORMAT = "vmvc-run/1"
RESULTS = "results.json"
MANIFEST = "manifest.json"


def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.results = path / RESULTS
        self.manifest_path = path / MANIFEST
        self.logs = path / "logs"

    def create(self) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            raise VmvcError(f"{self.path}: not empty (continue a run with --resume {self.path})")
        self.logs.mkdir(parents=True, exist_ok=True)

    # -- results ----------------------------------------------------------------------
    def suite(self) -> pyperf.BenchmarkSuite | None:
        if not self.results.exists():
            return None
        try:
            return pyperf.BenchmarkSuite.load(str(self.results))
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise VmvcError(f"{self.results}: not a pyperf results file: {exc}") from exc

    def add(self, benchmarks: list[pyperf.Benchmark]) -> pyperf.BenchmarkSuite:
        """Merge a task's benchmarks into results.json (one atomic rewrite)."""
        suite = self.suite()
        for benchmark in benchmarks:
            if suite is None:
                suite = pyperf.BenchmarkSuite([benchmark])
            else:
                suite.add_runs(benchmark)
        assert suite is not None
        with tempfile.TemporaryDirectory(dir=self.path, prefix=".results.") as scratch:
            tmp = Path(scratch) / RESULTS
            suite.dump(str(tmp), replace=True)
            with open(tmp) as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self.results)
        return suite

    def rounds_done(self, name: str) -> set[int]:
        suite = self.suite()
        if suite is None:
            return set()
        try:
            benchmark = suite.get_benchmark(name)
        except KeyError:
            return set()
        return {int(run.get_metadata().get("vmvc_round", -1)) for run in benchmark.get_runs()}

    # -- manifest ---------------------------------------------------------------------
    def manifest(self) -> dict:
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError as exc:
            raise VmvcError(f"{self.manifest_path}: missing (not a vmvc run dir)") from exc
        except (OSError, ValueError) as exc:
            raise VmvcError(f"{self.manifest_path}: unreadable: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise VmvcError(f"{self.manifest_path}: format {found!r}, expected {FORMAT!r}")
        return data

    def write_manifest(self, manifest: dict) -> None:
        atomic_write(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
