"""A run dir: ``results.json`` (one pyperf BenchmarkSuite), ``manifest.json`` and ``logs/``,
each file rewritten whole and renamed into place after every task, so a killed run leaves
the last finished task's state and nothing half-written. results.json is the record of what
is done: every run carries the round it belongs to (``vmvc_round``), its date and duration."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyperf

from results.errors import ResultsError
from results.manifest import Manifest
from results.runs import untimed

RESULTS = "results.json"
MANIFEST = "manifest.json"
LOGS = "logs"


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


def read_suite(path: Path) -> pyperf.BenchmarkSuite:
    """A results file (or a run dir's); bad input is one line naming the file."""
    file = path / RESULTS if path.is_dir() else path
    if not file.exists():
        raise ResultsError(f"{file}: missing (no benchmark finished, or not a vmvc run dir)")
    try:
        return pyperf.BenchmarkSuite.load(str(file))
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise ResultsError(f"{file}: not a pyperf results file "
                           f"({type(exc).__name__}: {str(exc)[:120]})") from exc


def read_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ResultsError(f"{path}: missing (not a vmvc run dir)") from exc
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not readable JSON: {exc}") from exc
    return Manifest.from_json(data, str(path))


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.results = path / RESULTS
        self.manifest_path = path / MANIFEST
        self.logs = path / LOGS

    def create(self) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            raise ResultsError(f"{self.path}: not empty (continue a run with --resume "
                               f"{self.path})")
        self.logs.mkdir(parents=True, exist_ok=True)

    # -- results ----------------------------------------------------------------------
    def suite(self) -> pyperf.BenchmarkSuite | None:
        return read_suite(self.results) if self.results.exists() else None

    def add(self, benchmarks: list[pyperf.Benchmark]) -> pyperf.BenchmarkSuite:
        """Merge a task's benchmarks into results.json (one atomic rewrite). Every run must
        say when it ran and for how long: pyperf's CLI misreads a run without them."""
        for benchmark in benchmarks:
            if untimed(benchmark):
                raise ResultsError(f"{benchmark.get_name()}: {untimed(benchmark)} run(s) "
                                   "without date or duration (a harness bug)")
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
    def manifest(self) -> Manifest:
        return read_manifest(self.manifest_path)

    def write_manifest(self, manifest: Manifest) -> None:
        atomic_write(self.manifest_path,
                     json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")

    def log(self, name: str, round_: int) -> Path:
        """The log of one task: a benchmark's round."""
        return self.logs / f"{name.replace(':', '_')}.round{round_ + 1}.log"
