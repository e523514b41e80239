"""The harness end to end through `vmvc run` (real backends, tiny image; the VM on the full
image), its result files read back with pyperf's own API and CLI, known answers, resume
after a kill, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pyperf
import pytest

from bench.backends import BACKENDS
from bench.harness.plan import SUITES, build_plan, runs_in_suite
from paths import BENCH_WORKDIR
from results import FORMAT, read_manifest
from results.names import METRICS as METRIC_NAMES
from tests.conftest import CONTAINERS, CiRun, instance_processes, vmvc

VMVC = str(Path(sys.executable).parent / "vmvc")
NAME = re.compile(rf"^({'|'.join(METRIC_NAMES)}):[a-z0-9_-]+(\.[a-z]+)?:({'|'.join(BACKENDS)})$")
def expected_names(backends: list[str], workloads: list[str], density: int = 0,
                   metrics: list[str] | None = None) -> set[str]:
    suite = dataclasses.replace(SUITES["quick"], density_max=density)
    plan = build_plan(backends, workloads, suite, 1, metrics=metrics)
    names = {t.name for t in plan}
    names |= {f"burst:{t.workload}.each:{t.backend}"  # each instance's own start time
              for t in plan if t.metric == "burst"}
    if "vm" in backends and (metrics is None or "startup" in metrics):
        names |= {"memory:idle:vm", "memory:idle.pss:vm"} | {f"boot-phase:{p}:vm" for p in
                                       ("qemu_started", "kernel_started", "init_started",
                                        "agent_connected", "first_command_done")}
    return names


@pytest.mark.slow
def test_every_host_and_container_backend_runs_true_and_a_workload(container_run: Path) -> None:
    suite = pyperf.BenchmarkSuite.load(str(container_run / "results.json"))
    names = set(suite.get_benchmark_names())
    assert names == expected_names(CONTAINERS, ["spin"], density=2)
    for benchmark in suite:
        assert NAME.match(benchmark.get_name())
        single = benchmark.get_name().startswith("isolation:") or re.match(
            r"burst:x\d+:", benchmark.get_name())  # one audit per round; one burst in quick
        assert benchmark.get_nvalue() >= (1 if single else 2)
        assert all(v > 0 for v in benchmark.get_values())
        meta = benchmark.get_metadata()
        assert meta["vmvc_definition"] and meta["vmvc_unit"] and meta["vmvc_better"]
    startup = {b: suite.get_benchmark(f"startup:true:{b}").median() for b in CONTAINERS}
    assert startup["bare"] < startup["builtin"] < 1.0  # a namespaced container costs more
    assert suite.get_benchmark("memory:idle:bare").get_metadata()["unit"] == "byte"
    for backend in CONTAINERS:  # one definition for all, bare included, naming the cgroup
        cgroup = suite.get_benchmark(f"memory:idle:{backend}").get_metadata()
        pss = suite.get_benchmark(f"memory:idle.pss:{backend}").get_metadata()
        assert cgroup["vmvc_definition"].startswith("usage of the instance's memory cgroup (")
        assert pss["vmvc_definition"].startswith("sum of the PSS (/proc/PID/smaps_rollup) of "
                                                 "every process in the instance's memory")
    density = suite.get_benchmark("density:idle:builtin")
    assert sorted(r.get_metadata()["vmvc_instances"] for r in density.get_runs()) == [1, 2]
    assert "vmvc_slope_bytes" in density.get_metadata()


@pytest.mark.slow
def test_manifest_records_host_image_settings_and_backends(container_run: Path, tiny_image,
                                                           host_accelerator: str) -> None:
    manifest = json.loads((container_run / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["status"] == "complete"
    assert manifest["image"]["digest"] == tiny_image.digest
    assert manifest["accelerator"]["accelerator"] == host_accelerator
    assert manifest["settings"]["suite"] == "quick" and manifest["settings"]["backends"] == \
        CONTAINERS
    assert {c["name"] for c in manifest["checks"]} >= {"root", "cgroups", "overlayfs"}
    assert {"python", "pyperf", "runc", "crun", "gvisor"} <= set(manifest["versions"])
    assert all(manifest["backends"][b]["status"] == "ok" for b in CONTAINERS)
    assert set(manifest["ratios"]) == {f"cost:spin:{b}" for b in CONTAINERS if b != "bare"
                                       and runs_in_suite(BACKENDS[b], "cost", SUITES["quick"])}
    assert manifest["failures"] == []


PYPERF_DURATION = {"day": 86400.0, "hour": 3600.0, "min": 60.0, "sec": 1.0, "ms": 1e-3,
                   "us": 1e-6, "ns": 1e-9}


def pyperf_seconds(text: str) -> float:
    """Seconds in pyperf's "1 hour 2 min 3.4 sec" or "12.5 ms"."""
    parts = re.findall(r"([\d.]+) (day|hour|min|sec|ms|us|ns)\b", text)
    assert parts, text
    return sum(float(number) * PYPERF_DURATION[unit] for number, unit in parts)


def pyperf_cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pyperf", *args], capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout




@pytest.mark.slow
def test_pyperf_cli_reads_the_results(container_run: Path) -> None:
    """pyperf's own CLI reads what it took, in-process runs (density) included: every
    benchmark's total duration is real seconds, all of them within the run's wall time,
    and its dates within the run's."""
    results = str(container_run / "results.json")
    manifest = read_manifest(container_run / "manifest.json")
    created, updated = (datetime.fromisoformat(t).astimezone().replace(tzinfo=None)
                        for t in (manifest.created, manifest.updated))
    wall = (updated - created).total_seconds() + 2  # the manifest's times are whole seconds
    stats = pyperf_cli("stats", results)
    assert "startup:true:crun" in stats and "density:idle:builtin" in stats
    totals = [pyperf_seconds(line) for line in stats.splitlines()
              if line.startswith("Total duration:")]
    suite_total, *totals = totals  # the suite's first, then each benchmark's
    names = pyperf.BenchmarkSuite.load(results).get_benchmark_names()
    assert len(totals) == len(names) and all(total > 0 for total in totals)
    assert sum(totals) == pytest.approx(suite_total, abs=0.1 * len(totals))
    assert suite_total <= wall, (suite_total, wall)
    for line in stats.splitlines():
        if line.startswith(("Start date:", "End date:")):
            when = datetime.fromisoformat(line.split(": ", 1)[1])
            assert created - timedelta(seconds=2) <= when <= updated + timedelta(seconds=wall)
    # against the stored quick run: the shared benchmarks' means, each in its own unit
    fixture = str(Path(__file__).parent / "fixtures" / "run-quick" / "results.json")
    compared = pyperf_cli("compare_to", "-v", fixture, results)
    means = dict(re.findall(rf"^(\S+)\n=+\n\nMean \+- std dev: .*-> \[{re.escape(results)}\] "
                            r"([\d.]+ \S+) \+-", compared, re.M))
    assert {"startup:true:bare", "startup:ready:crun", "memory:idle:runc"} <= set(means)
    for name, mean in means.items():
        if name.startswith("startup:"):
            assert 0 < pyperf_seconds(mean) < 10, (name, mean)
        else:
            assert re.fullmatch(r"[\d.]+ (B|KiB|MiB)", mean), (name, mean)


@pytest.mark.slow
def test_vmvc_compare_two_runs(container_run: Path) -> None:
    result = vmvc("compare", str(container_run), str(container_run), "--all")
    assert result.returncode == 0, result.stderr
    assert "startup:true:bare" in result.stdout and "not significant" in result.stdout


@pytest.mark.slow
def test_vm_backend_boot_phases_memory_and_a_workload(vm_run: CiRun,
                                                      host_accelerator: str) -> None:
    out = vm_run.out
    suite = pyperf.BenchmarkSuite.load(str(out / "results.json"))
    round_trips = {f"cost:rr.{figure}:vm" for figure in ("p50", "p99", "p999", "max")}
    assert set(suite.get_benchmark_names()) == expected_names(["vm"], ["spin", "rr"]) \
        - {"cost:rr:vm"} | round_trips | {"boot-phase:network_up:vm"}
    boot = suite.get_benchmark("startup:true:vm")
    phases = [suite.get_benchmark(f"boot-phase:{p}:vm").mean() for p in
              ("qemu_started", "kernel_started", "init_started", "agent_connected")]
    assert phases == sorted(phases) and phases[-1] <= boot.mean()
    # the service's boot (a NIC on the bridge): its address set before the agent connects
    network_up = suite.get_benchmark("boot-phase:network_up:vm")
    assert network_up.get_nvalue() == 1 and phases[1] < network_up.mean() < boot.mean() * 2
    assert all(suite.get_benchmark(name).get_nvalue() == 2 for name in round_trips)
    p50, p99 = (suite.get_benchmark(f"cost:rr.{f}:vm").median() for f in ("p50", "p99"))
    assert 0 < p50 <= p99 < 1.0  # a round trip into an emulated guest: µs to ms
    assert boot.get_metadata()["vmvc_accelerator"] == \
        ("kvm" if host_accelerator == "kvm" else "tcg (emulated)")
    assert suite.get_benchmark("memory:idle:vm").mean() > 50 << 20  # a guest's RAM
    manifest = json.loads((out / "manifest.json").read_text())
    assert "startup:ready:vm" not in manifest["definitions"]


@dataclasses.dataclass(frozen=True)
class BareRun:
    out: Path
    stderr: str
    code: int
    left: set[str]  # its instances' processes still running once it exited


@pytest.fixture(scope="module")
def bare_run(tiny_image, workloads_dir: Path, tmp_path_factory) -> BareRun:
    """One run that serves four tests: bare with the known-answer workload, a workload of
    several figures, and density (idle instances of every kind), and runc as far as a PATH
    without it can tell (every tool linked but runc: not installed)."""
    root = tmp_path_factory.mktemp("bare")
    tools = root / "bin"
    tools.mkdir()
    for directory in reversed(os.environ["PATH"].split(":")):
        if Path(directory).is_dir():
            for tool in Path(directory).iterdir():
                if tool.name != "runc":
                    (tools / tool.name).unlink(missing_ok=True)
                    (tools / tool.name).symlink_to(tool)
    run = subprocess.Popen(
        [VMVC, "run", "--image", "tiny", "--backends", "bare,runc", "--workloads", "nap,duo",
         "--density-max", "2", "--out", str(root / "out"), "--quiet"],
        env={**os.environ, "VMVC_WORKLOADS_DIR": str(workloads_dir), "PATH": str(tools)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # its own session id, which its orphans would keep
    _, stderr = run.communicate(timeout=900)
    return BareRun(root / "out", stderr, run.returncode, instance_processes(session=run.pid))


@pytest.mark.slow
def test_known_answer_sleep_200ms_on_bare(bare_run: BareRun, workloads_dir: Path,
                                          tmp_path: Path) -> None:
    assert bare_run.code == 0, bare_run.stderr[-2000:]
    out = bare_run.out
    nap = pyperf.BenchmarkSuite.load(str(out / "results.json")).get_benchmark("cost:nap:bare")
    for value in nap.get_values():
        assert 190 <= value <= 210, nap.get_values()
    redefined = tmp_path / "redefined"
    redefined.mkdir()
    (redefined / "nap.toml").write_text((workloads_dir / "nap.toml").read_text()
                                        .replace('"0.2"', '"0.1"'))
    (redefined / "duo.toml").write_text((workloads_dir / "duo.toml").read_text())
    before = (out / "results.json").read_bytes()
    result = vmvc("run", "--resume", str(out), "--quiet", workloads=redefined)
    assert result.returncode != 0 and "workload nap changed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (out / "results.json").read_bytes() == before


@pytest.mark.slow
def test_a_bare_run_leaves_no_instance_running(bare_run: BareRun) -> None:
    """Every instance a run starts (idle ones for memory and density, the workload's,
    `ready`'s) is stopped by that run, not left for `vmvc cleanup`: a `ready` shell caught
    in execve at its stop was left running in about one run in two."""
    assert bare_run.code == 0, bare_run.stderr[-2000:]
    assert bare_run.left == set()


@pytest.mark.slow
def test_known_answer_half_a_cpu_halves_the_cpu_workload(full_image, tmp_path: Path) -> None:
    """sysbench cpu runs for a fixed time: at a 50% quota it does half the events per
    second, i.e. each event takes twice the time. --cpus limits container instances only:
    bare, the host, runs free beside it in the same run."""
    out = tmp_path / "half"
    result = vmvc("run", "--backends", "bare,builtin", "--workloads", "cpu", "--cpus", "0.5",
                  "--metrics", "cost", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    suite = pyperf.BenchmarkSuite.load(str(out / "results.json"))
    assert {n.split(":")[0] for n in suite.get_benchmark_names()} == {"cost"}  # --metrics
    means = {b: suite.get_benchmark(f"cost:cpu:{b}").mean() for b in ("bare", "builtin")}
    time_ratio = means["bare"] / means["builtin"]
    assert 1.8 <= time_ratio <= 2.2, means


METRICS = "startup,cost"  # the killed run's: six tasks, killed after two


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_same_benchmarks(signum: int, tiny_image, workloads_dir: Path,
                                                   tmp_path: Path) -> None:
    """SIGKILL: the task in flight gets SIGTERM from the kernel and unwinds; SIGTERM: the
    run records itself interrupted (exit 130). Either way nothing is left, and --resume
    completes the plan with every task run once."""
    out = tmp_path / "killed"
    backends = ["bare", "crun"]
    # --resume keeps the run's --metrics  # a host process and a runtime's container
    env = {**os.environ, "VMVC_WORKLOADS_DIR": str(workloads_dir)}
    proc = subprocess.Popen([VMVC, "run", "--image", "tiny", "--backends", ",".join(backends),
                             "--workloads", "spin", "--metrics", METRICS, "--out", str(out),
                             "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (out / "results.json").exists() and proc.poll() is None:
            suite = pyperf.BenchmarkSuite.load(str(out / "results.json"))
            if len(suite) >= 2:
                break
        time.sleep(0.2)
    proc.send_signal(signum)
    code = proc.wait()
    if signum == signal.SIGTERM:
        assert code == 130
        assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    done = set(pyperf.BenchmarkSuite.load(str(out / "results.json")).get_benchmark_names())
    assert done < expected_names(backends, ["spin"], metrics=METRICS.split(","))
    deadline = time.monotonic() + 60  # the task in flight finishes what it made, then exits
    while time.monotonic() < deadline and subprocess.run(
            ["pgrep", "-f", "bench.harness.worker"], capture_output=True).returncode == 0:
        time.sleep(0.2)
    assert not list(BENCH_WORKDIR.glob("bare-*"))
    assert not list((BENCH_WORKDIR / "bundles").glob("*"))
    result = vmvc("run", "--resume", str(out), "--quiet", workloads=workloads_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    suite = pyperf.BenchmarkSuite.load(str(out / "results.json"))
    assert set(suite.get_benchmark_names()) == expected_names(backends, ["spin"],
                                                              metrics=METRICS.split(","))
    for benchmark in suite:  # each ran once: no task was run twice into the file
        assert {r.get_metadata()["vmvc_round"] for r in benchmark.get_runs()} == {0}
        assert len({r.get_metadata().get("date") for r in benchmark.get_runs()}) >= 1
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert not list(BENCH_WORKDIR.glob("bare-*"))
    assert not list((BENCH_WORKDIR / "bundles").glob("*"))


BAD = {
    "bad-regex": ('command = ["true"]\n[figure]\nkind = "regex"\nregex = "([0-9]+"\n'
                  'unit = "ops/s"\n', "figure.regex"),
    "no-command": ('[figure]\nkind = "wall"\n', "command: missing"),
    "unknown-unit": ('command = ["true"]\n[figure]\nkind = "wall"\nunit = "furlongs"\n',
                     "figure.unit"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_workload_file_is_one_line_and_nothing_is_written(case: str, tmp_path: Path) -> None:
    directory = tmp_path / "workloads"
    directory.mkdir()
    text, field = BAD[case]
    (directory / f"{case}.toml").write_text(f'name = "broken"\n{text}')
    out = tmp_path / "out"
    result = vmvc("run", "--image", "tiny", "--backends", "bare", "--out", str(out),
                  workloads=directory)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and f"{case}.toml" in line and field in line, line
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--backends", "bare,nosuch"], "unknown backend 'nosuch'"),
    (["--workloads", "nosuch"], "unknown workload 'nosuch'"),
    (["--suite", "huge"], "--suite 'huge'"),
    (["--repeat", "0"], "--repeat 0"),
    (["--image", "tiny", "--workloads", "cpu"], "needs sysbench"),
    (["--metrics", "startup,boot-phase"], "come with its startup boots"),
    (["--metrics", ","], "--metrics: no metric selected"),
])
def test_bad_options_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = vmvc("run", "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "\n" not in result.stderr.strip()
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_unavailable_backend_is_skipped_with_its_reason(bare_run: BareRun) -> None:
    """runc not installed as far as the harness can tell: the run goes on without it."""
    assert bare_run.code == 0, bare_run.stderr[-2000:]
    out = bare_run.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backends"]["runc"]["status"] == "skipped"
    assert "runc" in manifest["backends"]["runc"]["reason"]
    suite = pyperf.BenchmarkSuite.load(str(out / "results.json"))
    assert not [n for n in suite.get_benchmark_names() if n.endswith(":runc")]
    assert "cost:nap:bare" in suite.get_benchmark_names()


@pytest.mark.slow
def test_a_workload_of_several_figures_makes_a_benchmark_of_each(bare_run: BareRun) -> None:
    """cost:duo.rps and cost:duo.p99, each with its own unit and direction, its values
    from the same runs, and the run's time shared between them (pyperf's totals hold)."""
    assert bare_run.code == 0, bare_run.stderr[-2000:]
    suite = pyperf.BenchmarkSuite.load(str(bare_run.out / "results.json"))
    rps, p99 = (suite.get_benchmark(f"cost:duo.{f}:bare") for f in ("rps", "p99"))
    assert set(rps.get_values()) == {1234.5} and p99.mean() == pytest.approx(0.25e-3)
    assert (rps.get_metadata()["vmvc_unit"], rps.get_metadata()["vmvc_better"]) == \
        ("ops/s", "higher")
    assert (p99.get_metadata()["vmvc_unit"], p99.get_metadata()["unit"],
            p99.get_metadata()["vmvc_better"]) == ("s", "second", "lower")
    assert rps.get_total_duration() == pytest.approx(p99.get_total_duration())
    manifest = json.loads((bare_run.out / "manifest.json").read_text())
    assert manifest["workloads"]["duo"]["figures"]["p99"] == \
        {"kind": "regex", "unit": "s", "better": "lower"}
    assert "figures" not in manifest["workloads"]["nap"]  # one figure: as before
    report = bare_run.out.parent / "report.html"  # and the report shows both: the glance
    result = vmvc("report", str(bare_run.out), "-o", str(report))  # its p99 beside its rps
    assert result.returncode == 0, result.stderr
    assert "cost: duo.rps" in report.read_text() and "p99 250 µs" in report.read_text()
