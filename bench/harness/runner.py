"""``vmvc run``: build the image, check the host, plan, and run every task, writing the
run dir after each one. A failing task is recorded (with its reason and log) and the run
goes on; an interrupted run is continued by :func:`resume`."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

import pyperf

from bench.backends import BACKENDS, BackendContext, Limits, make_backend
from bench.backends.base import Backend, defer_signals
from bench.errors import VmvcError
from bench.harness.plan import SUITES, Counts, Suite, Task, build_plan, suite_with
from bench.harness.progress import RunProgress
from bench.harness.summary import cost_ratios
from bench.host_checks import failures_for, run_checks
from bench.metrics import METRICS, PlanInputs, RunContext
from bench.workloads import Workload, load_workloads
from bench.workloads.spec import Figure
from image.external import DIE_WITH_VMVC
from paths import BENCH_WORKDIR
from results import (
    Accelerator,
    BackendStatus,
    Failure,
    Host,
    HostCheck,
    Image,
    Manifest,
    NotApplicable,
    RunDir,
    WorkloadFacts,
)
from results import Settings as RecordedSettings
from runtime.storage import private_dir

EXCEPTION_LINE = re.compile(r"^([\w.]+(?:Error|Exception|Exit)): ")
# --metrics (boot-phase: startup's)
SELECTABLE = ("startup", "memory", "engine", "density", "burst", "cost", "isolation")
BUILTIN_WORKLOADS = ("cpu", "memory", "syscall", "fork", "disk", "net", "net-bridge",
                     "rr", "redis", "http")  # services: client on the host
# the default workloads of the full suite also run these (redis with one connection: the
# quick suite's 10 minutes go to the backends)
FULL_SUITE_WORKLOADS = ("redis-1", "db")


@dataclass
class Settings:
    suite: str = "quick"
    backends: list[str] = field(default_factory=lambda: [n for n, b in BACKENDS.items()
                                                         if b.default])
    workloads: list[str] = field(default_factory=lambda: list(BUILTIN_WORKLOADS))
    repeat: int = 1
    image: str = "full"
    cpus: float | None = None
    memory_mib: int | None = None
    density_max: int | None = None
    vm_boots: int | None = None
    vm_memory_mib: int = 512
    vm_vcpus: int = 1
    burst_max: int | None = None
    metrics: list[str] | None = None  # None: every metric

    def suite_counts(self) -> Suite:
        return suite_with(self.suite, self.density_max, self.vm_boots, self.burst_max)

    def recorded(self, counts: Suite) -> RecordedSettings:
        """These settings as the manifest records them, with the counts they came to."""
        return RecordedSettings(**asdict(self), suite_counts=counts.as_json())


def check_settings(settings: Settings, workloads: dict[str, Workload]) -> None:
    """Bad input → one line naming it, before anything is made."""
    if settings.suite not in SUITES:
        raise VmvcError(f"--suite {settings.suite!r}: choose one of {', '.join(SUITES)}")
    for name in settings.backends:
        if name not in BACKENDS:
            raise VmvcError(f"--backends: unknown backend {name!r} (known: "
                            f"{', '.join(BACKENDS)})")
    for name in settings.workloads:
        if name not in workloads:
            raise VmvcError(f"--workloads: unknown workload {name!r} (known: "
                            f"{', '.join(sorted(workloads))}; see vmvc workloads)")
    if not settings.backends:
        raise VmvcError("--backends: no backend selected")
    for name in settings.metrics or []:
        if name not in SELECTABLE:
            raise VmvcError(f"--metrics: {name!r} is not one to choose ({', '.join(SELECTABLE)}"
                            "; a VM's boot phases and memory come with its startup boots)")
    if settings.metrics == []:
        raise VmvcError("--metrics: no metric selected")
    if settings.repeat < 1:
        raise VmvcError(f"--repeat {settings.repeat}: must be at least 1")
    if settings.image == "tiny":
        for name in settings.workloads:
            if workloads[name].packages:
                raise VmvcError(f"--image tiny is busybox only: workload {name} needs "
                                f"{', '.join(workloads[name].packages)} (use --image full)")
    for option, value, least in (("--vm-boots", settings.vm_boots, 1),
                                 ("--density-max", settings.density_max, 0),
                                 ("--burst-max", settings.burst_max, 0),
                                 ("--vm-memory-mib", settings.vm_memory_mib, 128),
                                 ("--vm-vcpus", settings.vm_vcpus, 1),
                                 ("--memory-mib", settings.memory_mib, 8)):
        if value is not None and value < least:
            raise VmvcError(f"{option} {value}: must be at least {least}")
    if settings.cpus is not None and not 0 < settings.cpus <= (os.cpu_count() or 1):
        raise VmvcError(f"--cpus {settings.cpus}: must be in (0, {os.cpu_count()}]")


class Harness:
    def __init__(self, rundir: RunDir, settings: Settings, quiet: bool = False,
                 previous: Manifest | None = None) -> None:
        self.rundir = rundir
        self.settings = settings
        self.quiet = quiet
        self.suite = settings.suite_counts()
        self.workloads = load_workloads()
        self.previous = previous  # the manifest of the run being resumed
        self.manifest: Manifest  # made by prepare()
        self.context: BackendContext | None = None
        self.accelerator = "tcg"

    # -- set-up -----------------------------------------------------------------------
    def prepare(self, progress: RunProgress) -> None:
        from image.build import build_image

        s = self.settings
        packages = sorted({p for w in s.workloads for p in self.workloads[w].packages})
        with progress.step(f"image ({s.image})"):
            image = build_image(s.image, extra_packages=packages if s.image == "full" else None)
        with progress.step("host checks"):
            verdict, checks = run_checks()
        self.accelerator = verdict.accelerator  # decided once here; every VM boots under it
        private_dir(BENCH_WORKDIR)  # instances' upper dirs, overlays: see runtime.storage
        self.context = BackendContext(
            oci_layout=image.oci_layout, disk=image.disk, kernel=image.kernel,
            initramfs=image.initramfs, workdir=BENCH_WORKDIR,
            limits=Limits(cpus=s.cpus, memory_mib=s.memory_mib),
            vm_memory_mib=s.vm_memory_mib, vm_vcpus=s.vm_vcpus, accelerator=verdict.accelerator)
        previous = self.previous
        if previous is not None:  # resuming: the rest must be measured under what the start was
            before = (previous.image.digest, previous.accelerator.name)
            if before != (image.digest, verdict.accelerator):
                raise VmvcError(
                    f"{self.rundir.manifest_path}: started with image {before[0]} under "
                    f"{before[1]}, now {image.digest} under {verdict.accelerator}: results "
                    "would mix; start a new run")
            for name in s.workloads:
                was = previous.workloads.get(name)
                now = workload_facts(self.workloads[name])
                if was is not None and was.measured() != now.measured():
                    raise VmvcError(
                        f"{self.rundir.manifest_path}: workload {name} changed since the run "
                        f"started ({now.source}): results would mix; start a new run")
        self.manifest = Manifest(
            created=previous.created if previous else _now(), updated=_now(), status="running",
            settings=s.recorded(self.suite),
            image=Image(profile=s.image, digest=image.digest, entry=str(image.entry)),
            accelerator=Accelerator.decided(verdict.accelerator, verdict.how),
            host=host_facts(), checks=[HostCheck(**c.as_json()) for c in checks],
            versions=versions(checks), backends={},
            workloads={name: workload_facts(self.workloads[name]) for name in s.workloads},
            definitions=previous.definitions if previous else {},
            failures=previous.failures if previous else [])
        for name in s.backends:
            backend = make_backend(name, self.context)
            failed = failures_for(checks, [name])
            reason = "; ".join(f"{c.name}: {c.detail}" for c in failed) or backend.unavailable()
            if backend.needs_full_image and s.image == "tiny" and reason is None:
                reason = f"the tiny image has no guest agent: {name} needs --image full"
            self.manifest.backends[name] = BackendStatus(
                "skipped" if reason else "ok", backend.kind, reason or None)
        self.rundir.write_manifest(self.manifest)

    # -- the run ----------------------------------------------------------------------
    def run(self) -> int:
        """Every task not done yet; 0 when all ran, 1 when some failed, 130 if interrupted."""
        with RunProgress(quiet=self.quiet) as progress:
            self.prepare(progress)
            usable = [b for b in self.settings.backends
                      if self.manifest.backends[b].status == "ok"]
            host_side = frozenset(w for w in self.settings.workloads
                                  if self.workloads[w].host_command)
            bridged = frozenset(b for b in usable if BACKENDS[b].bridge)
            tasks = build_plan(usable, self.settings.workloads, self.suite,
                               self.settings.repeat, host_side, bridged, self.settings.metrics)
            inputs = PlanInputs([BACKENDS[b] for b in usable], self.settings.workloads,
                                self.suite, host_side, bridged)
            self.manifest.not_applicable = [
                NotApplicable(**item) for metric in METRICS.values()
                if self.settings.metrics is None or metric.name in self.settings.metrics
                for item in metric.not_applicable(inputs)] + [
                NotApplicable(**item) for item in left_out_of_quick(inputs.backends, self.suite,
                                                                    self.settings.metrics)]
            self.manifest.failures = []  # a resumed run tries its failed tasks again
            todo = [t for t in tasks if t.round not in self.rundir.rounds_done(self.key(t))]
            progress.begin(len(tasks), len(tasks) - len(todo),
                           {t: self.estimate(t) for t in todo})
            previous = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
            defer_signals(_raise_interrupt)  # in-process tasks finish what they make first
            try:
                for task in todo:
                    progress.task_started(task)
                    started = time.monotonic()
                    try:
                        benchmarks = self.run_task(task)
                        if not benchmarks:
                            raise VmvcError("no value measured")
                    except Exception as exc:  # one task's failure, whatever it is
                        reason = self.task_error(task, exc)
                        self.record_failure(task, reason)
                        progress.task_failed(task, reason)
                        continue
                    suite = self.rundir.add(benchmarks)
                    self.manifest.ratios = cost_ratios(suite)
                    self.manifest.updated = _now()
                    self.rundir.write_manifest(self.manifest)
                    progress.task_done(task, suite.get_benchmark(self.key(task)),
                                       time.monotonic() - started)
            except KeyboardInterrupt:
                self.manifest.status = "interrupted"
                self.manifest.updated = _now()
                self.rundir.write_manifest(self.manifest)
                raise
            finally:
                signal.signal(signal.SIGINT, previous[0])
                signal.signal(signal.SIGTERM, previous[1])
        suite = self.rundir.suite()
        if suite is not None:
            self.manifest.ratios = cost_ratios(suite)
        self.manifest.status = "complete" if not self.manifest.failures else \
            "complete with failures"
        self.manifest.updated = _now()
        self.rundir.write_manifest(self.manifest)
        return 1 if self.manifest.failures else 0

    def task_error(self, task: Task, exc: Exception) -> str:
        """One line for the manifest; the traceback of an unexpected error in the task's log."""
        if isinstance(exc, VmvcError):
            return str(exc)
        import traceback

        with open(self.log_path(task), "a") as log:
            traceback.print_exception(exc, file=log)
        return f"{type(exc).__name__}: {exc}"

    def record_failure(self, task: Task, reason: str) -> None:
        self.manifest.failures.append(Failure(
            benchmark=task.name, round=task.round, reason=reason,
            log=str(self.log_path(task).relative_to(self.rundir.path))))
        self.manifest.updated = _now()
        self.rundir.write_manifest(self.manifest)

    def log_path(self, task: Task) -> Path:
        return self.rundir.log(task.name, task.round)

    def key(self, task: Task) -> str:
        return METRICS[task.metric].key(task, self.run_context())

    def estimate(self, task: Task) -> float:
        """Rough seconds a task takes: the progress bar's ETA weights."""
        return METRICS[task.metric].estimate(task, BACKENDS[task.backend], self.run_context())

    def run_context(self) -> RunContext:
        return RunContext(suite=self.suite, suite_name=self.settings.suite,
                          workloads=self.workloads, accelerator=self.accelerator,
                          backend_context=self.context, pyperf=self._pyperf_task)

    # -- one task ---------------------------------------------------------------------
    def run_task(self, task: Task) -> list[pyperf.Benchmark]:
        assert self.context is not None
        metric = METRICS[task.metric]
        backend = make_backend(task.backend, self.context)
        run = self.run_context()
        try:
            metadata = metric.benchmarks(task, backend, run)
            for name, meta in metadata.items():
                self.manifest.definitions[name] = meta["vmvc_definition"]
            return metric.run(task, backend, metadata, run)
        finally:
            backend.close()

    def _pyperf_task(self, task: Task, counts: Counts, meta: dict) -> pyperf.Benchmark:
        """pyperf's Runner in a subprocess (its own worker processes below it)."""
        assert self.context is not None
        context = self.context.as_json()
        spec = {"name": task.name, "metric": task.metric, "workload": task.workload,
                "backend": task.backend, "suite": self.settings.suite,
                "settle": self.suite.settle_seconds, "context": context, "metadata": meta}
        log = self.log_path(task)
        with tempfile.TemporaryDirectory(dir=self.rundir.path, prefix=".task.") as scratch:
            output = Path(scratch) / "benchmark.json"
            argv = [*DIE_WITH_VMVC, sys.executable, "-m", "bench.harness.worker",
                    "--task", json.dumps(spec), "--processes", str(counts.processes),
                    "--values", str(counts.values), "--warmups", str(counts.warmups),
                    "--loops", str(counts.loops), "--copy-env", "-o", str(output)]
            with open(log, "w") as out:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=False)
                try:
                    code = proc.wait()
                except BaseException:
                    proc.terminate()
                    proc.wait()
                    raise
            if code != 0 or not output.exists():
                raise VmvcError(f"{failure_line(log)} (log: {log})")
            return pyperf.Benchmark.load(str(output))


def failure_line(log: Path) -> str:
    """Why a pyperf task failed: the worker's exception (the first one in the log; pyperf's
    own "failed with exit code" comes after it)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        return "no log"
    for line in lines:
        match = EXCEPTION_LINE.match(line)
        if match and "failed with exit code" not in line:
            known = match.group(1).rsplit(".", 1)[-1] in ("VmvcError", "ContainerError", "VmError")
            return line[match.end():] if known else line[:300]
    return (lines or ["exited without output"])[-1][:300]


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def host_facts() -> Host:
    from bench.kernel_features import cgroup_layout

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    meminfo = Path("/proc/meminfo").read_text().split()
    return Host(hostname=platform.node(), kernel=platform.release(), os=_os_release(),
                cpu_model=cpu, cpu_count=os.cpu_count(), memory_bytes=int(meminfo[1]) * 1024,
                cgroup_layout=cgroup_layout().kind)


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def versions(checks: list) -> dict:
    found = {"vmvc": _package_version("vmvc"), "python": platform.python_version(),
             "pyperf": pyperf.__version__}
    for check in checks:
        if check.name in ("qemu", "libvirt", "runc", "crun", "gvisor") and check.ok:
            found[check.name] = check.detail
    return found


def _package_version(name: str) -> str:
    try:
        return package_metadata.version(name)
    except package_metadata.PackageNotFoundError:
        return "unknown"


def workload_facts(workload: Workload) -> WorkloadFacts:
    """The manifest's record of a workload (the first figure's in the flat keys)."""
    def better(figure: Figure) -> str:
        return "higher" if figure.higher_is_better else "lower"

    return WorkloadFacts(
        description=workload.description, command=workload.command, setup=workload.setup,
        unit=workload.figure.unit, better=better(workload.figure),
        figure=workload.figure.kind, source=workload.source, params=workload.params,
        host_command=workload.host_command or None,
        figures={name: {"kind": f.kind, "unit": f.unit, "better": better(f)}
                 for name, f in workload.figures.items()} if workload.several else None)


def left_out_of_quick(backends: list[type[Backend]], suite: Suite,
                      metrics: list[str] | None) -> list[dict]:
    """The manifest's not-applicable items for the metrics the quick suite leaves out of a
    backend's run (``<metric>:*:<backend>``), each with its reason (the report lists them)."""
    if suite.name != "quick":
        return []
    return [{"benchmark": f"{metric}:*:{backend.name}",
             "reason": f"the quick suite runs {backend.name}'s "
                       f"{', '.join(backend.quick_metrics)} only, to stay within its 10 "
                       f"minutes; the full suite runs its {metric} too"}
            for backend in backends if backend.quick_metrics is not None
            for metric in (metrics or SELECTABLE) if metric not in backend.quick_metrics]
