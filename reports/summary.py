"""The report's figures in words and tables: the at-a-glance table and the four claims,
each decided by this run's numbers."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import pandas as pd

from reports.compare import differ_significantly
from reports.load import Run
from results import BACKEND_ORDER, backends_in_order
from results import format_value as fmt

# where each backend sits on the spectrum (results.BACKEND_ORDER's order): the report's
# header colours and every chart's hues follow these groups
GROUP = {"bare": "host", "bare-veth": "host", "builtin": "container", "builtin-cli": "container",
         "runc": "container", "crun": "container", "docker": "engine", "podman": "engine",
         "gvisor": "sandbox", "lxc": "system-container", "vm": "VM",
         "vm-container": "container-in-VM"}


@dataclass
class GlanceRow:
    metric: str  # e.g. "startup (to exit of true)"
    unit: str
    better: str
    definition: str
    cells: dict[str, dict] = field(default_factory=dict)  # backend → {value, text, ratio, best}


def backends_of(frame: pd.DataFrame) -> list[str]:
    return backends_in_order(frame["backend"])


def glance(run: Run) -> list[GlanceRow]:
    """Per metric, every backend's median with its ratio to bare; the best marked."""
    frame = run.frame
    rows: list[GlanceRow] = []
    wanted = [("startup", "true", "startup to the exit of true"),
              ("startup", "ready", "startup to the first output line"),
              ("memory", "idle", "host memory of one idle instance"),
              ("memory", "idle.pss", "PSS of one idle instance's processes"),
              ("isolation", "audit", "isolation checks passed (the matrix in its section)")]
    density = frame[frame["metric"] == "density"]
    costs = sorted(set(frame.loc[frame["metric"] == "cost", "workload"]))
    for metric, workload, title in wanted:
        part = frame[(frame["metric"] == metric) & (frame["workload"] == workload)]
        if len(part):
            rows.append(_row(title, part, "median"))
    if len(density):
        rows.append(_row("memory per extra idle instance (density slope)", density, "slope",
                         "slope_stderr"))
    cost = frame[frame["metric"] == "cost"]
    for workload in glance_figures(costs):
        part = cost[cost["workload"] == workload]
        row = _row(f"cost: {workload}", part, "median")
        partner = next((p for p in p99_candidates(workload) if p in costs), None)
        for backend, cell in row.cells.items():
            value = _median(cost, f"cost:{partner}:{backend}") if partner else None
            if value is not None:
                cell["beside"] = f"p99 {fmt(value, 's')}"
        rows.append(row)
    return rows


def glance_figures(workloads: list[str]) -> list[str]:
    """The cost figures the glance shows: every single-figure workload; of a service's
    figures, its throughputs (its percentiles are the services section's), or its p50
    when it reports only latencies (a round trip), each with its p99 beside."""
    services: dict[str, list[str]] = {}
    shown = []
    for workload in workloads:
        service, dot, _ = workload.partition(".")
        if dot:
            services.setdefault(service, []).append(workload)
        else:
            shown.append(workload)
    for figures in services.values():
        latencies = [f for f in figures if _is_latency(f)]
        throughputs = [f for f in figures if f not in latencies]
        shown += throughputs or [f for f in figures if f.endswith(".p50")] or figures
    return sorted(shown)


def _is_latency(workload: str) -> bool:
    figure = workload.partition(".")[2]
    return figure in ("avg", "max") or figure.rsplit("_", 1)[-1] in ("p50", "p99", "p999",
                                                                      "max", "avg")


def p99_candidates(workload: str) -> list[str]:
    """The p99 figures that may go with a service's figure, the closest first: get →
    get_p99; small_rps → small_p99; tps or p50 → p99."""
    service, _, figure = workload.partition(".")
    if not figure or figure == "p99":
        return []
    prefix = figure.rsplit("_", 1)[0] if "_" in figure else figure
    return [f"{service}.{prefix}_p99", f"{service}.p99"]


def _row(title: str, part: pd.DataFrame, column: str, error: str | None = None) -> GlanceRow:
    """One glance row; with *error* (a standard-error column) each figure shows ± twice it,
    and a figure within that is said to be within the noise."""
    first = part.iloc[0]
    row = GlanceRow(title, first["unit"], first["better"], first["definition"])
    values = {r["backend"]: float(r[column]) for _, r in part.iterrows()
              if r[column] is not None and not pd.isna(r[column])}
    if not values:
        return row
    sources = {backend: part[part["backend"] == backend].iloc[0] for backend in values}
    margins = {backend: _margin(source, error) for backend, source in sources.items()}
    noise = {backend: error is not None and _within_noise(value, margins[backend])
             for backend, value in values.items()}
    best = _clear_leader(values, sources, margins, row.better)
    # a ratio to a figure that is zero within its error says nothing
    bare = None if noise.get("bare") or row.unit == "checks" else values.get("bare")
    for backend, value in values.items():
        ratio = value / bare if bare else None
        source = sources[backend]
        text = fmt(value, row.unit)
        if margins[backend] is not None:
            text += f" ± {fmt(2 * margins[backend], row.unit)}"
        if noise[backend]:
            text += " (within the noise)"  # still the best when lower is better: it is ~0
        row.cells[backend] = {"value": value, "text": text,
                              "ratio": ratio, "best": backend == best,
                              "definition": source["definition"], "name": source["name"],
                              "statistic": column}
    return row


def _clear_leader(values: dict[str, float], sources: dict[str, pd.Series],
                  margins: dict[str, float | None], better: str) -> str | None:
    """The backend that leads the runner-up outside the noise, or None: a mark on a lead
    within the noise crowns whichever backend this run's noise favoured. Medians are told
    apart by pyperf's t-test (as `vmvc compare` tells runs apart); a figure with a standard
    error (the density slope) leads when its ± 2 errors, as shown, do not overlap the
    runner-up's."""
    if len(values) < 2:
        return None
    first, second = sorted(values, key=values.get, reverse=better == "higher")[:2]
    if margins[first] is not None or margins[second] is not None:
        if margins[first] is None or margins[second] is None:
            return None
        gap = abs(values[first] - values[second])
        return first if gap > 2 * (margins[first] + margins[second]) else None
    samples = [list(sources[b]["values"]) for b in (first, second)]
    means_agree = (statistics.fmean(samples[0]) > statistics.fmean(samples[1])) == \
        (better == "higher")
    return first if means_agree and differ_significantly(*samples) else None


def _margin(source: pd.Series, error: str | None) -> float | None:
    """The row's standard error from its *error* column, if it has one."""
    margin = source[error] if error else None
    return None if margin is None or pd.isna(margin) else float(margin)


def _within_noise(value: float, margin: float | None) -> bool:
    """Not distinguishable from zero: within twice its standard error (or not above 0)."""
    return value <= 0 or (margin is not None and abs(value) < 2 * margin)


@dataclass
class Claim:
    claim: str
    verdict: str  # holds | does not hold | holds only under … | not measured here
    evidence: str
    css: str  # holds | fails | partly | unmeasured


def _median(frame: pd.DataFrame, name: str) -> float | None:
    part = frame[frame["name"] == name]
    return float(part.iloc[0]["median"]) if len(part) else None


def claims(runs: list[Run]) -> list[tuple[Run | None, Claim]]:
    """The four claims for each run; the hypervisor-type claim once, across runs."""
    out: list[tuple[Run | None, Claim]] = []
    for run in runs:
        out += [(run, claim_startup(run)), (run, claim_memory(run)),
                (run, claim_isolation(run)), (run, claim_services(run))]
    out.append((None, claim_hypervisor_type(runs)))
    return out


def _fastest_container(frame: pd.DataFrame, prefix: str) -> tuple[str, float] | None:
    found = [(b, _median(frame, f"{prefix}:{b}")) for b in BACKEND_ORDER
             if GROUP.get(b) == "container"]
    found = [(b, v) for b, v in found if v is not None]
    return min(found, key=lambda item: item[1]) if found else None


def _emulated(run: Run, faster: str = "boots faster") -> str:
    return f" (under TCG emulation: a KVM host {faster})" if run.accelerator != "kvm" else ""


def claim_startup(run: Run) -> Claim:
    text = "VMs take minutes to start while containers take milliseconds"
    vm = _median(run.frame, "startup:true:vm")
    container = _fastest_container(run.frame, "startup:true")
    if vm is None or container is None:
        return Claim(text, "not measured here", "this run has no VM or no container startup",
                     "unmeasured")
    backend, seconds = container
    slowest = max(v for b in BACKEND_ORDER if GROUP.get(b) == "container"
                  and (v := _median(run.frame, f"startup:true:{b}")) is not None)
    evidence = (f"the VM ran its first command {fmt(vm, 's')} after the start request"
                f"{_emulated(run)}; containers ran true to its exit in {fmt(seconds, 's')} "
                f"({backend})" + (f" to {fmt(slowest, 's')}" if slowest != seconds else "") +
                f": the VM is {vm / seconds:.0f}x slower")
    if vm >= 60 and slowest < 1:
        return Claim(text, "holds", evidence, "holds")
    burst = _largest_burst(run.frame)
    if burst is not None:
        n, vms, containers = burst
        evidence += (f"; {n} at once: the last VM up after {fmt(vms, 's')}, the last "
                     f"container after {fmt(containers, 's')}")
        if vms >= 60 and containers < 1:
            return Claim(text, f"holds for {n} VMs started at once", evidence, "partly")
    if slowest < 1:
        return Claim(text, "does not hold", "containers do take milliseconds, but VMs take "
                     f"seconds, not minutes: {evidence}", "fails")
    return Claim(text, "does not hold", evidence, "fails")


def _largest_burst(frame: pd.DataFrame) -> tuple[int, float, float] | None:
    """The largest burst measured for the VM and a container: N, the VM's time until all N
    were up, the slowest container's (medians)."""
    part = frame[frame["metric"] == "burst"]
    for n in sorted({int(w[1:]) for w in part["workload"] if "." not in w}, reverse=True):
        vm = _median(frame, f"burst:x{n}:vm")
        containers = [v for b in BACKEND_ORDER if GROUP.get(b) == "container"
                      and (v := _median(frame, f"burst:x{n}:{b}")) is not None]
        if vm is not None and containers:
            return n, vm, max(containers)
    return None


def claim_memory(run: Run) -> Claim:
    text = "VMs waste resources by allocating a separate OS for each app"
    vm = _median(run.frame, "memory:idle:vm")
    container = _fastest_container(run.frame, "memory:idle")
    if vm is None or container is None:
        return Claim(text, "not measured here", "this run has no idle VM or container reading",
                     "unmeasured")
    backend, used = container
    configured = run.manifest.settings.vm_memory_mib
    evidence = (f"an idle VM cost the host {fmt(vm, 'bytes')} (its memory cgroup) against "
                f"{fmt(used, 'bytes')} for an idle {backend} container ({vm / used:.0f}x)")
    if configured:
        evidence += (f"; of its {configured} MiB of guest RAM the VM held "
                     f"{100 * vm / (configured * 2**20):.0f} %: RAM is taken as the guest "
                     "touches it, not reserved up front")
    if vm / used >= 10:
        return Claim(text, "holds only under idle, memory-light apps", evidence
                     + " — the guest kernel and its userspace are a fixed cost per VM that "
                     "matters most when the app itself is small", "partly")
    return Claim(text, "does not hold", evidence, "fails")


def claim_isolation(run: Run) -> Claim:
    text = "containers isolate applications, VMs isolate systems"
    backends = set(run.frame["backend"])
    vms = sorted(b for b in backends if GROUP.get(b) == "VM")
    containers = sorted(b for b in backends if GROUP.get(b) in ("container", "engine"))
    if not vms or not containers:
        return Claim(text, "not measured here", "this run has no VM or no container",
                     "unmeasured")
    audited = {b: checks for b, checks in _audits(run.frame).items()
               if {"own_kernel", *APPLICATION_VIEW} <= set(checks)}  # an audit of today's
    if audited:
        missing = [b for b in (vms[0], *containers) if b not in audited]
        if vms[0] in audited and len(missing) < len(containers):
            claim = _claim_isolation_audited(text, audited, vms[0],
                                             [c for c in containers if c in audited])
            if not missing:
                return claim
            return Claim(text, "holds in part", f"{claim.evidence}; no audit of "
                         f"{', '.join(missing)} in this run", "partly")
        return Claim(text, "not measured here", "the isolation audit is missing for "
                     f"{', '.join(missing)} in this run", "unmeasured")
    kernel = run.manifest.host.kernel or "the host's kernel"
    evidence = (f"the containers ({', '.join(containers)}) ran the image's processes on the "
                f"host kernel {kernel}, fenced by namespaces (pid, net, ipc, uts, mount, "
                "cgroup), cgroups and Docker's seccomp profile: one application's view; the "
                "VM booted its own kernel from the image behind virtio devices, with its own "
                "init, PID 1 and network stack: a whole system (no isolation audit in this "
                "run: `--metrics isolation` checks it)")
    syscall = efficiency(run, "syscall")
    if syscall:
        evidence += (f"; system calls in the VM ran at {syscall:.2f}x bare's speed"
                     f"{_emulated(run, 'is faster')}")
    return Claim(text, "holds", evidence, "holds")


APPLICATION_VIEW = ("host_pids", "host_root_fs", "own_network", "own_hostname")


def _audits(frame: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """Backend → check name → check, of the run's isolation audits."""
    part = frame[(frame["metric"] == "isolation") & frame["audit"].notna()]
    return {r["backend"]: {c["name"]: c for c in r["audit"]} for _, r in part.iterrows()}


def _claim_isolation_audited(text: str, audited: dict[str, dict[str, dict]], vm: str,
                             containers: list[str]) -> Claim:
    """Decided by the audit: containers give an application its own view (processes,
    files, network, hostname) on the host's kernel; a VM gives a whole system its kernel."""
    def passed(backend: str) -> int:
        return sum(bool(c["isolates"]) for c in audited[backend].values())

    def failed(backend: str) -> list[str]:
        return [f"{c['question']}: {c['answer']}" for c in audited[backend].values()
                if not c["isolates"]]

    total = len(audited[vm])
    views = [c for c in containers
             if all(audited[c][n]["isolates"] for n in APPLICATION_VIEW if n in audited[c])]
    shared = [c for c in containers if not audited[c]["own_kernel"]["isolates"]]  # checked
    system = audited[vm]["own_kernel"]["isolates"]
    common = sorted(set.intersection(*(set(failed(c)) for c in containers)))
    evidence = (f"the audit: {', '.join(f'{c} {passed(c)}' for c in containers)} of {total} "
                f"checks; {vm} {passed(vm)} of {total}. Every container "
                + ("had its own processes, root file system, network stack and hostname (an "
                   "application's view)" if len(views) == len(containers) else
                   f"but {', '.join(sorted(set(containers) - set(views)))} had its own "
                   "processes, root file system, network stack and hostname")
                + (f"; and every one of them answered {'; '.join(common)}" if common else "")
                + f". The {vm} " + ("ran a kernel of its own, so its root and capabilities "
                                    "reach that kernel only" if system else
                                    "did not show a kernel of its own"))
    between = [b for b in backends_in_order(audited)
               if GROUP.get(b) in ("sandbox", "system-container", "container-in-VM")]
    if between:
        evidence += ". Between them: " + "; ".join(
            f"{b} ({GROUP[b].replace('-', ' ')}) {passed(b)} of {total}"
            + (", its own kernel" if audited[b]["own_kernel"]["isolates"] else
               ", the host's kernel") for b in between)
    if len(views) == len(containers) and len(shared) == len(containers) and system:
        return Claim(text, "holds", evidence, "holds")
    return Claim(text, "holds in part", evidence, "partly")


SLOWER = 1.2  # a round trip this much slower than bare's is a cost worth a verdict


def claim_services(run: Run) -> Claim:
    text = ("a VM's network path costs its services, a container's does not (IBM, 2015: "
            "a TCP round trip of 67.9 µs in KVM against 37.6 µs native)")
    bare, vm = (_median(run.frame, f"cost:rr.p50:{b}") for b in ("bare", "vm"))
    container = _fastest_container(run.frame, "cost:rr.p50")
    if bare is None or vm is None or container is None:
        return Claim(text, "not measured here", "this run has no rr workload on bare, a VM "
                     "and a container", "unmeasured")
    backend, mine = container
    evidence = (f"the median TCP round trip from the host (rr, p50) took {fmt(vm, 's')} into "
                f"the VM, {fmt(mine, 's')} into a {backend} container over a veth and the "
                f"bridge, {fmt(bare, 's')} on the host's loopback")
    get = efficiency(run, "redis.get")
    if get:
        evidence += f"; Redis GETs at 50 connections ran at {get:.2f}x bare's rate in the VM"
    evidence += _emulated(run, "has a much shorter path")
    if vm / bare >= SLOWER and mine / bare < SLOWER:
        return Claim(text, "holds", evidence, "holds")
    if vm / bare >= SLOWER:
        return Claim(text, "holds for VMs; containers pay too", evidence, "partly")
    return Claim(text, "does not hold", evidence, "fails")


def efficiency(run: Run, workload: str, backend: str = "vm") -> float | None:
    """The backend's median against bare's (as the glance table shows them), turned so that
    above 1 is better."""
    part = run.frame[(run.frame["metric"] == "cost") & (run.frame["workload"] == workload)]
    values = {r["backend"]: (r["median"], r["better"]) for _, r in part.iterrows()}
    if backend not in values or "bare" not in values:
        return None
    (mine, better), (bare, _) = values[backend], values["bare"]
    return mine / bare if better == "higher" else bare / mine


def claim_hypervisor_type(runs: list[Run]) -> Claim:
    text = "type 1 hypervisors are more efficient than type 2"
    by_accel: dict[str, list[float]] = {}
    for run in runs:
        ratios = [r for r in (efficiency(run, w) for w in
                              set(run.frame.loc[run.frame["metric"] == "cost", "workload"]))
                  if r]
        if ratios:
            by_accel.setdefault(run.accelerator, []).append(
                math.exp(sum(math.log(r) for r in ratios) / len(ratios)))
    if "kvm" not in by_accel or "tcg" not in by_accel:
        only = ", ".join(sorted(by_accel)) or "no VM"
        return Claim(text, "not measured here", f"VMs ran under {only} only; the comparison "
                     "needs a KVM run and an emulated (TCG) run in one report", "unmeasured")
    kvm, tcg = max(by_accel["kvm"]), max(by_accel["tcg"])
    evidence = (f"VM workloads ran at {kvm:.2f}x bare's speed under KVM (hardware-assisted, in the "
                f"kernel) and {tcg:.2f}x under TCG (emulation in a user process); strictly, "
                "KVM vs TCG is acceleration vs emulation, not type 1 vs type 2")
    return Claim(text, "holds" if kvm > tcg else "does not hold", evidence,
                 "holds" if kvm > tcg else "fails")
