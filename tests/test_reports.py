"""`vmvc report`: rendered from a stored real run (tests/fixtures/run-quick, the quick suite
on this 2-core TCG machine) and from a live tiny run; the HTML parses strictly, every
section is there, every at-a-glance number is results.json's; a real browser renders it;
bad input is one line naming the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import html5lib
import numpy
import pyperf
import pytest

from bench.backends import BACKENDS
from bench.harness.plan import SUITES, runs_in_suite
from tests.conftest import CONTAINERS

VMVC = str(Path(sys.executable).parent / "vmvc")
FIXTURE = Path(__file__).parent / "fixtures" / "run-quick"
SECTIONS = ("glance", "claims", "startup", "memory", "cost", "services", "environment", "raw")
CLAIMS = ("VMs take minutes to start", "VMs waste resources", "containers isolate applications",
          "type 1 hypervisors")


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VMVC, "report", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def parse(path: Path):
    """Strict HTML5 parsing: any parse error fails the test."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(
        path.read_bytes())


def glance_cells(document) -> list:
    return [td for td in document.iter("td") if td.get("data-name")]


def check_against_results(html: Path, run_dir: Path) -> int:
    """Every at-a-glance figure is results.json's median (or the density slope)."""
    suite = pyperf.BenchmarkSuite.load(str(run_dir / "results.json"))
    cells = glance_cells(parse(html))
    for td in cells:
        benchmark = suite.get_benchmark(td.get("data-name"))
        expected = benchmark.median() if td.get("data-statistic") == "median" else \
            benchmark.get_metadata()["vmvc_slope_bytes"]
        assert float(td.get("data-value")) == pytest.approx(expected, rel=1e-9)
    return len(cells)


def test_report_from_the_stored_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    result = report(str(run_dir))
    assert result.returncode == 0, result.stderr
    html = run_dir / "report.html"
    document = parse(html)
    ids = {element.get("id") for element in document.iter() if element.get("id")}
    assert set(SECTIONS) <= ids
    text = html.read_text()
    for claim in CLAIMS:
        assert claim in text
    assert "tcg-banner-1" in ids  # the stored run's VMs were emulated
    assert check_against_results(html, run_dir) >= 6 * 8  # six backends, eight figures
    assert len(list(document.iter("{http://www.w3.org/2000/svg}svg"))) + \
        text.count("<svg") >= 5  # startup, phases, memory, cost charts at least
    for remote in ("<script", 'src="http', 'href="http', "url(http", "@import"):
        assert remote not in text  # self-contained: no script, nothing fetched
    for name in ("results.json", "manifest.json", "report.csv"):
        assert (run_dir / name).exists() and f'href="{name}"' in text


@pytest.mark.slow
def test_report_from_a_live_run_with_baseline_and_markdown(container_run: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "out" / "live.html"
    result = report(str(container_run), "--baseline", str(FIXTURE), "-o", str(out))
    assert result.returncode == 0, result.stderr
    document = parse(out)
    ids = {element.get("id") for element in document.iter() if element.get("id")}
    assert set(SECTIONS) | {"baseline"} <= ids
    assert check_against_results(out, container_run) >= 5 * 3
    assert (out.parent / "run1-results.json").exists() and (out.parent / "live.csv").exists()
    html = out.read_text()  # the burst chart: one row per backend, dots and a median bar
    assert "Startup under concurrency: N instances requested at once" in html
    assert all(f"{b}, N=4" in html for b in CONTAINERS
               if runs_in_suite(BACKENDS[b], "burst", SUITES["quick"]))
    assert html.count('data-check="own_kernel"') == len(CONTAINERS)  # the isolation matrix
    assert "quick-limited" in html  # the engines' left-out metrics, said
    md = tmp_path / "summary.md"
    result = report(str(container_run), "--format", "md", "-o", str(md))
    assert result.returncode == 0, result.stderr
    text = md.read_text()
    assert "## At a glance" in text and "## The claims, checked" in text
    assert "| startup to the exit of true" in text


@pytest.mark.slow
def test_several_run_dirs_one_report(container_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "both.html"
    result = report(str(FIXTURE), str(container_run), "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    labels = [json.loads((d / "manifest.json").read_text())["host"]["hostname"]
              for d in (FIXTURE, container_run)]
    assert all(label in text for label in labels)
    assert text.count('class="glance"') == 2  # a panel per run


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed")
def test_a_real_browser_renders_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    assert report(str(run_dir)).returncode == 0
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1200,2400", f"--screenshot={shot}", (run_dir / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line
               or "Failed to load resource" in line]
    assert console == [], console
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # text, tables and charts, not a blank page
    background = max(colours)[0] / (image.width * image.height)
    assert background < 0.97


@pytest.mark.parametrize("case", ["missing-dir", "truncated-results", "foreign-manifest",
                                  "no-manifest"])
def test_bad_input_is_one_line_naming_the_file(case: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    if case == "missing-dir":
        target = tmp_path / "nowhere"
    elif case == "truncated-results":
        text = (run_dir / "results.json").read_text()
        (run_dir / "results.json").write_text(text[: len(text) // 2])
        target = run_dir / "results.json"
    elif case == "foreign-manifest":
        manifest = json.loads((run_dir / "manifest.json").read_text())
        manifest["format"] = "vmvc-run/99"
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
        target = run_dir / "manifest.json"
    else:
        (run_dir / "manifest.json").unlink()
        target = run_dir / "manifest.json"
    given = target if case == "missing-dir" else run_dir
    out = tmp_path / "out.html"
    result = report(str(given), "-o", str(out))
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and str(target) in line, line
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def density_benchmark(points: list[tuple[int, float]], backend: str = "x") -> pyperf.Benchmark:
    before = 1e9
    return pyperf.Benchmark([pyperf.Run([before + used], metadata={
        "name": f"density:idle:{backend}", "loops": 1, "vmvc_instances": n,
        "vmvc_before_bytes": before, "vmvc_unit": "bytes", "vmvc_better": "lower"})
        for n, used in points])


def test_density_slope_and_its_error() -> None:
    from results import density_fit

    mib = 2.0**20
    slope, error = density_fit(density_benchmark([(n, 300 * mib * n) for n in (1, 2, 4, 8)]))
    assert slope == pytest.approx(300 * mib) and error == pytest.approx(0, abs=1e-3)
    noisy = [(1, 3 * mib), (2, -2 * mib), (4, 4 * mib), (8, -1 * mib), (16, 2 * mib)]
    slope, error = density_fit(density_benchmark(noisy))  # KiB-sized instances: noise only
    assert abs(slope) < 2 * error
    (fit_slope, _), covariance = numpy.polyfit([n for n, _ in noisy], [y for _, y in noisy], 1,
                                               cov=True)  # scaled by residuals / (n - 2)
    assert slope == pytest.approx(fit_slope) and error == pytest.approx(covariance[0][0] ** 0.5)
    assert density_fit(density_benchmark([(2, 10.0)])) == (5.0, None)


def test_a_baseline_whose_figure_was_redefined_is_not_compared(tmp_path: Path) -> None:
    """A baseline from before the syscall workload became dd (ns per call, lower is better)
    had stress-ng's ops/s: those rows say "not comparable", never "worse"."""
    old = tmp_path / "old"
    shutil.copytree(FIXTURE, old)
    suite = pyperf.BenchmarkSuite.load(str(old / "results.json"))
    benchmarks = []
    for benchmark in suite:
        if benchmark.get_name().startswith("cost:syscall:"):
            benchmark = pyperf.Benchmark([pyperf.Run(
                [1e6 / v for v in run.values], warmups=run.warmups, collect_metadata=False,
                metadata={**run.get_metadata(), "vmvc_unit": "ops/s", "vmvc_better": "higher"})
                for run in benchmark.get_runs()])
        benchmarks.append(benchmark)
    (old / "results.json").unlink()
    pyperf.BenchmarkSuite(benchmarks).dump(str(old / "results.json"))
    out = tmp_path / "against.html"
    result = report(str(FIXTURE), "--baseline", str(old), "-o", str(out))
    assert result.returncode == 0, result.stderr
    rows = [tr for tr in parse(out).iter("tr") if "cost:syscall:" in "".join(tr.itertext())]
    assert rows and all("not comparable" in "".join(tr.itertext()) for tr in rows)
    compared = subprocess.run([VMVC, "compare", str(old), str(FIXTURE)], capture_output=True,
                              text=True, timeout=120, check=False)
    assert compared.returncode == 0, compared.stderr
    assert "cost:syscall:vm" in compared.stdout and "not comparable" in compared.stdout


def test_a_slope_within_its_noise_is_said_so_and_not_a_ratio_base() -> None:
    from reports.load import Run, frame_of
    from reports.summary import glance

    mib = 2**20
    bare = density_benchmark([(1, 3 * mib), (2, -2 * mib), (4, 4 * mib), (8, -mib)], "bare")
    vm = density_benchmark([(1, 290 * mib), (2, 581 * mib), (4, 1159 * mib), (8, 2321 * mib)],
                           "vm")
    suite = pyperf.BenchmarkSuite([bare, vm])
    (row,) = glance(Run(Path("synthetic"), {}, suite, frame_of(suite, {})))
    assert row.cells["bare"]["text"].endswith("(within the noise)")
    assert row.cells["bare"]["ratio"] is None and row.cells["vm"]["ratio"] is None
    assert "within the noise" not in row.cells["vm"]["text"]
    assert row.cells["vm"]["text"].startswith("290 MiB ± ")


def test_a_burst_of_vms_changes_the_startup_verdict_only_when_it_should() -> None:
    """One VM up in 5 s: "seconds, not minutes". Four at once, the last after 70 s: the claim
    holds for a burst, and says so; a burst under a minute changes nothing."""
    from reports.load import Run, frame_of
    from reports.summary import claim_startup

    def bench(name: str, values: list[float]) -> pyperf.Benchmark:
        return pyperf.Benchmark([pyperf.Run(values, metadata={
            "name": name, "loops": 1, "unit": "second", "vmvc_unit": "s",
            "vmvc_better": "lower"}, collect_metadata=False)])

    def verdict(vm_burst: float) -> tuple[str, str]:
        suite = pyperf.BenchmarkSuite([
            bench("startup:true:vm", [5.0, 5.2]), bench("startup:true:crun", [0.03, 0.031]),
            bench("burst:x4:vm", [vm_burst, vm_burst]), bench("burst:x4:crun", [0.1, 0.11])])
        manifest = SimpleNamespace(accelerator=SimpleNamespace(name="tcg"))  # what it reads
        claim = claim_startup(Run(Path("synthetic"), manifest, suite, frame_of(suite, {})))
        return claim.verdict, claim.evidence

    slow, evidence = verdict(70.0)
    assert slow == "holds for 4 VMs started at once" and "4 at once" in evidence
    assert verdict(20.0)[0] == "does not hold"


def glance_of(*benchmarks: pyperf.Benchmark) -> list:
    from reports.load import Run, frame_of
    from reports.summary import glance

    suite = pyperf.BenchmarkSuite(list(benchmarks))
    return glance(Run(Path("synthetic"), {}, suite, frame_of(suite, {})))


def cost_benchmark(backend: str, values: list[float]) -> pyperf.Benchmark:
    return pyperf.Benchmark([pyperf.Run([v], metadata={
        "name": f"cost:disk:{backend}", "loops": 1, "vmvc_unit": "IOPS",
        "vmvc_better": "higher"}, collect_metadata=False) for v in values])


def starred(row) -> list[str]:
    return [backend for backend, cell in row.cells.items() if cell["best"]]


def test_the_best_is_marked_only_when_its_lead_is_outside_the_noise() -> None:
    # the quick run's disk figures: a 1.1x lead on two noisy values each is no lead
    (row,) = glance_of(cost_benchmark("bare", [7305, 7716]), cost_benchmark("runc", [6347, 6919]))
    assert starred(row) == []
    (row,) = glance_of(cost_benchmark("bare", [7305, 7316, 7296]),
                       cost_benchmark("runc", [6347, 6355, 6339]))
    assert starred(row) == ["bare"]
    (row,) = glance_of(cost_benchmark("bare", [7305, 7316, 7296]))
    assert starred(row) == []  # nothing to lead


def test_the_best_density_slope_is_marked_only_apart_from_the_next() -> None:
    mib = 2**20
    apart = [density_benchmark([(n, 300 * mib * n + e) for n, e in
                                ((1, mib), (2, -mib), (4, mib), (8, 0))], "vm"),
             density_benchmark([(n, 100 * mib * n + e) for n, e in
                                ((1, mib), (2, -mib), (4, mib), (8, 0))], "runc")]
    (row,) = glance_of(*apart)
    assert starred(row) == ["runc"]
    close = [density_benchmark([(n, 101 * mib * n + e) for n, e in
                                ((1, 9 * mib), (2, -9 * mib), (4, 9 * mib), (8, 0))], "vm"),
             apart[1]]
    (row,) = glance_of(*close)
    assert starred(row) == []


def test_services_latencies_are_percentile_curves_not_cost_bars() -> None:
    """A service's latency figures (seconds, cost:<workload>.<figure>) get one chart per
    service with a curve per backend, in percentile order; its throughput stays a bar."""
    from reports import charts
    from reports.load import frame_of

    def bench(name: str, unit: str, better: str, value: float) -> pyperf.Benchmark:
        return pyperf.Benchmark([pyperf.Run([value, value * 1.01], metadata={
            "name": name, "loops": 1, "vmvc_unit": unit, "vmvc_better": better},
            collect_metadata=False)])

    suite = pyperf.BenchmarkSuite(
        [bench(f"cost:rr.{p}:{b}", "s", "lower", v * (4 if b == "vm" else 1))
         for b in ("bare", "crun", "vm") for p, v in (("max", 2e-3), ("p50", 8e-5),
                                                       ("p999", 7e-4), ("p99", 2e-4))]
        + [bench(f"cost:redis.get:{b}", "ops/s", "higher", 7e4) for b in ("bare", "vm")]
        + [bench(f"cost:cpu:{b}", "events/s", "higher", 4e3) for b in ("bare", "vm")])
    frame = frame_of(suite, {})
    (service, svg), = charts.service_latency(frame)
    assert service == "rr"
    ticks = [t for t in ("p50", "p99", "p999", "max") if f">{t}<" in svg]
    assert ticks == ["p50", "p99", "p999", "max"]  # every percentile on the axis
    assert svg.index(">p50<") < svg.index(">p99<") < svg.index(">p999<") < svg.index(">max<")
    bars = charts.isolation_cost(frame)
    assert "redis.get" in bars and "cpu" in bars and "rr.p99" not in bars
    assert charts.service_latency(frame_of(pyperf.BenchmarkSuite(
        [bench("cost:cpu:bare", "events/s", "higher", 1.0)]), {})) == []


def test_the_services_claim_reads_the_round_trips() -> None:
    """IBM's finding checked here: a VM's round trip 1.2x bare's or more while the fastest
    container stays under, holds; a container as slow, partly; no rr, not measured."""
    from reports.load import Run, frame_of
    from reports.summary import claim_services

    def verdict(p50: dict[str, float]) -> str:
        suite = pyperf.BenchmarkSuite([pyperf.Benchmark([pyperf.Run([v, v], metadata={
            "name": f"cost:rr.p50:{b}", "loops": 1, "vmvc_unit": "s", "vmvc_better": "lower"},
            collect_metadata=False)]) for b, v in p50.items()])
        manifest = SimpleNamespace(accelerator=SimpleNamespace(name="kvm"))
        return claim_services(Run(Path("synthetic"), manifest, suite,
                                  frame_of(suite, {}))).verdict

    assert verdict({"bare": 40e-6, "crun": 45e-6, "vm": 70e-6}) == "holds"
    assert verdict({"bare": 40e-6, "crun": 60e-6, "vm": 70e-6}) == \
        "holds for VMs; containers pay too"
    assert verdict({"bare": 40e-6, "crun": 41e-6, "vm": 42e-6}) == "does not hold"
    assert verdict({"bare": 40e-6, "crun": 41e-6}) == "not measured here"


def test_the_glance_shows_a_services_throughput_with_its_p99_beside() -> None:
    """One row per throughput (or, for a round trip, its p50), the p99 in the same cell;
    the other percentiles stay in the services section."""
    from reports.load import Run, frame_of
    from reports.summary import glance, glance_figures

    def bench(name: str, unit: str, better: str, value: float) -> pyperf.Benchmark:
        return pyperf.Benchmark([pyperf.Run([value, value], metadata={
            "name": name, "loops": 1, "vmvc_unit": unit, "vmvc_better": better},
            collect_metadata=False)])

    figures = [("redis.get", "ops/s", "higher", 8e4), ("redis.get_p99", "s", "lower", 6e-4),
               ("redis.get_max", "s", "lower", 3e-3), ("rr.p50", "s", "lower", 7e-5),
               ("rr.p99", "s", "lower", 1.5e-4), ("db.tps", "ops/s", "higher", 700.0),
               ("db.avg", "s", "lower", 6e-3), ("db.p99", "s", "lower", 1.5e-2),
               ("cpu", "events/s", "higher", 4e3)]
    suite = pyperf.BenchmarkSuite([bench(f"cost:{w}:{b}", u, better, v)
                                   for w, u, better, v in figures for b in ("bare", "vm")])
    rows = {row.metric: row for row in glance(Run(Path("synthetic"), {}, suite,
                                                  frame_of(suite, {})))}
    assert list(rows) == ["cost: cpu", "cost: db.tps", "cost: redis.get", "cost: rr.p50"]
    assert rows["cost: redis.get"].cells["vm"]["beside"] == "p99 600 µs"
    assert rows["cost: rr.p50"].cells["bare"]["beside"] == "p99 150 µs"
    assert rows["cost: db.tps"].cells["bare"]["beside"] == "p99 15 ms"
    assert "beside" not in rows["cost: cpu"].cells["bare"]
    assert glance_figures(["http.large_mibs", "http.large_p99", "http.small_p50",
                           "http.small_rps"]) == ["http.large_mibs", "http.small_rps"]


def test_the_boot_chart_has_a_bar_per_booting_backend() -> None:
    """vm and vm-container both boot: one bar each, each with the phases it reports."""
    import pandas as pd

    from reports.charts import boot_phases
    from results import BOOT_PHASES

    rows = [{"metric": "boot-phase", "workload": phase, "backend": backend,
             "median": i + 1.0 + extra}
            for backend, extra, phases in (("vm", 0.0, BOOT_PHASES[:-1]),
                                           ("vm-container", 0.25, BOOT_PHASES))
            for i, phase in enumerate(phases)]
    svg = boot_phases(pd.DataFrame(rows))
    assert svg is not None and BOOT_PHASES[-1] in svg and "vm-container" in svg
    ends = (f"{len(BOOT_PHASES) - 1:.2f} s", f"{len(BOOT_PHASES) + 0.25:.2f} s")
    assert all(end in svg for end in ends)  # where each backend's start ends


def _audited_run(audits: dict[str, list[dict]], rounds: int = 1):
    """A run of isolation benchmarks only, each backend's checks as given (every round the
    same unless a check's ``answers`` lists one answer per round)."""
    from reports.load import Run, frame_of

    def run_of(backend: str, checks: list[dict], i: int) -> pyperf.Run:
        round_checks = [{**{k: v for k, v in c.items() if k != "answers"},
                         "answer": c.get("answers", [c["answer"]] * rounds)[i]}
                        for c in checks]
        return pyperf.Run([float(sum(c["isolates"] for c in checks))], metadata={
            "name": f"isolation:audit:{backend}", "loops": 1, "vmvc_unit": "checks",
            "vmvc_better": "higher", "vmvc_audit": json.dumps(round_checks)},
            collect_metadata=False)

    suite = pyperf.BenchmarkSuite([pyperf.Benchmark([run_of(b, checks, i)
                                                     for i in range(rounds)])
                                   for b, checks in audits.items()])
    manifest = SimpleNamespace(accelerator=SimpleNamespace(name="kvm"),
                               host=SimpleNamespace(kernel="6.1"))
    return Run(Path("synthetic"), manifest, suite, frame_of(suite, {}))


def _checks(**isolating: bool) -> list[dict]:
    return [{"name": name, "short": name, "question": f"{name}?", "isolates": value,
             "answer": "yes" if value else "no", "evidence": "e"}
            for name, value in isolating.items()]


VIEW = {"host_pids": True, "host_root_fs": True, "own_network": True, "own_hostname": True}


def test_the_isolation_claim_is_decided_by_the_audit() -> None:
    from reports.summary import claim_isolation

    container = _checks(own_kernel=False, **VIEW, host_root=False)
    vm = _checks(own_kernel=True, **VIEW, host_root=True)
    holds = claim_isolation(_audited_run({"runc": container, "vm": vm}))
    assert holds.verdict == "holds" and "runc 4 of 6" in holds.evidence
    weak = _checks(own_kernel=False, **{**VIEW, "own_network": False}, host_root=False)
    assert claim_isolation(_audited_run({"runc": weak, "vm": vm})).verdict == "holds in part"
    missing = claim_isolation(_audited_run({"runc": container, "crun": container, "vm": vm,
                                            "docker": _checks(host_mounts=True)}))
    assert missing.verdict == "holds in part" and "docker" in missing.evidence
    older = _checks(own_kernel=False, host_mounts=True)  # an audit of other checks: no crash,
    # read as a run without an audit
    assert "no isolation audit" in claim_isolation(_audited_run({"runc": older,
                                                                 "vm": older})).evidence


def test_the_matrix_marks_an_answer_that_varied_between_rounds() -> None:
    from reports.isolation import matrix

    checks = _checks(own_kernel=False, **VIEW)
    checks[1]["answers"] = ["no", "yes"]
    table = matrix(_audited_run({"crun": checks, "bare": _checks(own_kernel=True)},
                                rounds=2).frame)
    assert [row["backend"] for row in table["rows"]] == ["bare", "crun"]  # the spectrum's order
    assert table["varied"] and table["rows"][1]["cells"][1]["varied"]
    assert table["rows"][0]["cells"][1] is None  # bare's audit had no such check: a dash
