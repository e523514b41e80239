"""results/, the run-dir contract: the stored run's manifest read into types and written back
byte for byte the same JSON, benchmark names, units, the orders the other packages must agree
with, runs that say when and how long, and the import rules (results/ needs only the standard
library and pyperf; reports/ never reaches bench/)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pyperf
import pytest

from results import (
    BACKEND_ORDER,
    BOOT_PHASES,
    BenchmarkName,
    ResultsError,
    RunClock,
    RunDir,
    backends_in_order,
    compose,
    format_value,
    parse,
    read_manifest,
    read_suite,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "run-quick"


def test_the_stored_manifest_reads_into_types_and_writes_back_the_same(tmp_path: Path) -> None:
    manifest = read_manifest(FIXTURE / "manifest.json")
    assert manifest.accelerator.name == "tcg" and manifest.host.hostname == "vm"
    assert manifest.settings.vm_memory_mib == 512 and manifest.backends["vm"].kind == "vm"
    assert manifest.workloads["cpu"].better == "higher"
    assert manifest.to_json() == json.loads((FIXTURE / "manifest.json").read_text())
    run_dir = RunDir(tmp_path)
    run_dir.write_manifest(manifest)
    assert run_dir.manifest_path.read_text() == (FIXTURE / "manifest.json").read_text()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(format="vmvc-run/99"), "format 'vmvc-run/99'"),
    (lambda m: m.pop("host"), "missing or malformed 'host'"),
    (lambda m: m["image"].update(colour="red"), "image: unknown key 'colour'"),
    (lambda m: m["failures"].append("oops"), "failures: expected an object"),
])
def test_a_bad_manifest_is_one_line_naming_the_file(change, message: str,
                                                    tmp_path: Path) -> None:
    data = json.loads((FIXTURE / "manifest.json").read_text())
    change(data)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError) as caught:
        read_manifest(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_truncated_results_file_is_one_line_naming_it(tmp_path: Path) -> None:
    text = (FIXTURE / "results.json").read_text()
    (tmp_path / "results.json").write_text(text[: len(text) // 2])
    with pytest.raises(ResultsError, match=rf"^{tmp_path}/results.json: not a pyperf"):
        read_suite(tmp_path)
    assert len(read_suite(FIXTURE).get_benchmark_names()) > 50


def test_benchmark_names_compose_and_parse() -> None:
    assert compose("boot-phase", "kernel_started", "vm") == "boot-phase:kernel_started:vm"
    assert parse("cost:net-bridge:builtin-cli") == BenchmarkName("cost", "net-bridge",
                                                                 "builtin-cli")
    assert parse("bm_float") is None and parse("a:b:c:d") is None and parse("a::c") is None


def test_units_are_shown_in_a_readable_scale() -> None:
    assert format_value(272 * 1024, "bytes") == "272 KiB"
    assert format_value(629_512_192, "bytes") == "600 MiB"
    assert format_value(512, "bytes") == "512 B"
    assert format_value(0.0004, "s") == "400 µs" and format_value(0.0123, "s") == "12.3 ms"
    assert format_value(2.7, "s") == "2.7 s" and format_value(2.71828, "s", digits=4) == "2.718 s"
    assert format_value(12345.6, "events/s") == "12,346 events/s"
    assert format_value(1.23456, "ns") == "1.235 ns" and format_value(None, "s") == "\u2013"


def test_the_orders_agree_with_the_registry_and_the_driver() -> None:
    from bench.backends import BACKENDS
    from bench.host_checks import BACKENDS as CHECKED
    from vmdriver.vm import PHASE_EVENTS, PHASES

    assert tuple(BACKENDS) == BACKEND_ORDER == tuple(CHECKED)
    assert tuple(PHASES) == BOOT_PHASES[:len(PHASES)] and set(PHASE_EVENTS) == set(PHASES)
    booting = [cls.phase_events for cls in BACKENDS.values() if cls.boot_phases]
    assert all(cls.startup_phase in cls.phase_events for cls in BACKENDS.values()
               if cls.boot_phases)
    assert {p for events in booting for p in events} == set(BOOT_PHASES)
    for events in booting:  # each backend's phases in the report's order
        assert [p for p in BOOT_PHASES if p in events] == list(events)
    assert backends_in_order(["vm", "zeta", "bare", "alpha"]) == ["bare", "vm", "alpha", "zeta"]


def test_every_run_says_when_and_how_long_or_is_refused(tmp_path: Path) -> None:
    clock = RunClock()
    run = clock.stop().run([1e9], {"name": "density:idle:bare"})
    meta = run.get_metadata()
    assert 0 <= meta["duration"] < 5 and meta["date"] and meta["loops"] == 1
    run_dir = RunDir(tmp_path)
    run_dir.add([pyperf.Benchmark([run])])
    bare = pyperf.Run([1e9], metadata={"name": "memory:idle:bare", "loops": 1},
                      collect_metadata=False)
    with pytest.raises(ResultsError, match=r"memory:idle:bare: 1 run\(s\) without date or "
                                           "duration"):
        run_dir.add([pyperf.Benchmark([bare])])
    assert read_suite(tmp_path).get_benchmark_names() == ["density:idle:bare"]


def _imports(package: str) -> set[str]:
    """The top-level modules every file of *package* imports."""
    found = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_results_needs_only_the_standard_library_and_pyperf() -> None:
    foreign = _imports("results") - set(sys.stdlib_module_names) - {"pyperf", "results"}
    assert foreign == set()
    code = ("import json, sys, pyperf; before = set(sys.modules); import results; "
            "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True, cwd=REPO).stdout)
    assert set(loaded) - set(sys.stdlib_module_names) - {"pyperf", "results"} == set()


def test_reports_never_import_bench() -> None:
    assert not _imports("reports") & {"bench", "vmdriver", "runtime"}
    # and at run time: a report renders with bench/ unimportable
    code = ("import sys; sys.modules['bench'] = None; from pathlib import Path; "
            "from reports.render import context; from reports.load import load_run; "
            f"run = load_run(Path({str(FIXTURE)!r})); print(len(context([run], None)['claims']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, cwd=REPO, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "5", result.stderr[-2000:]

