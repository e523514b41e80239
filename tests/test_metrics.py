"""Metrics as classes (bench/metrics/): their plan rules ask backends' capabilities, and the
burst metric, for real: N instances released at one moment, every one stopped after."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.backends import BACKENDS, BackendContext
from bench.errors import VmvcError
from bench.harness.plan import SUITES, build_plan
from bench.metrics import METRICS, PlanInputs
from bench.metrics.burst import burst
from paths import BENCH_WORKDIR


def test_every_metric_plans_by_capability_not_by_name() -> None:
    plan = PlanInputs([BACKENDS[b] for b in ("bare", "builtin", "vm")], ["cpu", "net-bridge"],
                      SUITES["quick"], frozenset({"net-bridge"}), frozenset({"bare", "builtin"}))
    groups = {m.name: m.groups(plan) for m in METRICS.values()}
    assert groups["startup"] == [("true", ["bare", "builtin", "vm"]),
                                 ("ready", ["bare", "builtin"])]  # vm: ready = False
    assert groups["memory"] == [("idle", ["bare", "builtin"]),  # vm: from its boots
                                ("idle.pss", ["bare", "builtin"])]
    assert groups["boot-phase"] == []
    assert groups["burst"] == [("x4", ["bare", "builtin", "vm"])]
    assert groups["cost"] == [("cpu", ["bare", "builtin", "vm"]),
                              ("net-bridge", ["bare", "builtin"])]
    assert [n["benchmark"] for n in METRICS["cost"].not_applicable(plan)] == \
        ["cost:net-bridge:vm"]


def test_metrics_chosen_are_the_only_ones_planned() -> None:
    names = {t.metric for t in build_plan(["bare", "vm"], ["cpu"], SUITES["quick"], 1,
                                          metrics=["burst", "cost"])}
    assert names == {"burst", "cost"}
    assert {t.metric for t in build_plan(["bare"], ["cpu"], SUITES["quick"], 1)} == \
        {"startup", "memory", "burst", "cost", "isolation"}  # density: 0 in quick


def test_a_slow_backend_runs_its_quick_metrics_in_quick_and_everything_in_full() -> None:
    from bench.backends import BACKENDS
    from bench.harness.runner import left_out_of_quick

    chosen = set(BACKENDS["docker"].quick_metrics or ())
    quick = build_plan(["bare", "docker"], ["cpu"], SUITES["quick"], 1)
    assert {t.metric for t in quick if t.backend == "docker"} == chosen
    assert {t.metric for t in quick if t.backend == "bare"} >= {"burst", "cost"}
    full = build_plan(["bare", "docker"], ["cpu"], SUITES["full"], 1)
    assert {t.metric for t in full if t.backend == "docker"} > chosen | {"burst", "cost"}
    left = left_out_of_quick([BACKENDS["docker"], BACKENDS["bare"]], SUITES["quick"], None)
    assert {item["benchmark"] for item in left} == {"density:*:docker", "burst:*:docker",
                                                    "cost:*:docker"}
    assert all("full suite" in item["reason"] for item in left)
    assert left_out_of_quick([BACKENDS["docker"]], SUITES["full"], None) == []
    assert left_out_of_quick([BACKENDS["docker"]], SUITES["quick"], ["startup"]) == []


def test_the_full_suite_bursts_1_4_16() -> None:
    names = [t.name for t in build_plan(["crun"], [], SUITES["full"], 1) if t.metric == "burst"]
    assert names == ["burst:x1:crun", "burst:x4:crun", "burst:x16:crun"]


@pytest.mark.parametrize("name", ["bare", "builtin", "crun"])
def test_a_burst_starts_n_at_once_and_stops_them_all(name: str, tiny_image) -> None:
    """burst() returns only once every starter stopped its instance and exited 0 (the
    session's leak checks see the cgroups, mounts and state dirs)."""
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    context = BackendContext(tiny_image.oci_layout, tiny_image.disk, tiny_image.kernel,
                             tiny_image.initramfs, BENCH_WORKDIR)
    times = burst(name, context, 4)
    assert len(times) == 4 and all(0 < t < 30 for t in times)
    assert subprocess.run(["pgrep", "-f", "bench.metrics.burst_starter"],
                          check=False).returncode == 1  # no starter left


def test_a_failing_instance_fails_the_burst_and_leaves_no_starter(tiny_image) -> None:
    context = BackendContext(tiny_image.oci_layout, Path("/nonexistent/disk"),
                             Path("/nonexistent/kernel"), tiny_image.initramfs, BENCH_WORKDIR)
    with pytest.raises(VmvcError, match=r"^burst: an instance could not start: "):
        burst("vm", context, 2)
    assert subprocess.run(["pgrep", "-f", "bench.metrics.burst_starter"],
                          check=False).returncode == 1


def test_the_run_dir_knows_every_metric_in_the_plans_order() -> None:
    import results

    assert tuple(METRICS) == results.METRICS


def test_burst_max_caps_the_suites_burst_sizes() -> None:
    from bench.harness.plan import suite_with

    def sizes(burst_max: int | None) -> list[str]:
        suite = suite_with("full", burst_max=burst_max)
        return [t.workload for t in build_plan(["crun"], [], suite, 1) if t.metric == "burst"]

    assert sizes(None) == ["x1", "x4", "x16"]
    assert sizes(4) == ["x1", "x4"] and sizes(0) == []


def test_a_services_client_gets_a_cpu_the_instance_does_not_use() -> None:
    from bench.metrics.cost import service_cpus

    assert service_cpus({0, 1}) == ({0}, {1})
    assert service_cpus({0, 2, 3, 5}) == ({0, 2, 3}, {5})  # the harness's own CPUs only
    assert service_cpus({4}) == (None, None)  # one CPU: nothing to split


def test_defaults_leave_out_variants_and_the_full_suites_own_workloads() -> None:
    """bare-veth runs when named; redis-1 and db only in the full suite unless named."""
    import argparse

    from bench.commands.run import _settings_from_args
    from bench.harness.runner import BUILTIN_WORKLOADS, Settings

    assert "bare-veth" in BACKENDS and "bare-veth" not in Settings().backends
    assert Settings().backends == [b for b in BACKENDS if b != "bare-veth"]
    names = ("suite", "repeat", "image", "cpus", "memory_mib", "density_max", "burst_max",
             "vm_boots", "vm_memory_mib", "vm_vcpus", "backends", "workloads", "metrics")

    def settings(**given: object) -> Settings:
        return _settings_from_args(argparse.Namespace(**{**dict.fromkeys(names), **given}))

    assert settings().workloads == list(BUILTIN_WORKLOADS)
    assert "db" not in BUILTIN_WORKLOADS and "redis-1" not in BUILTIN_WORKLOADS
    assert settings(suite="full").workloads == [*BUILTIN_WORKLOADS, "redis-1", "db"]
    assert settings(suite="full", workloads="db,cpu").workloads == ["db", "cpu"]
    assert settings(suite="quick", workloads="db").workloads == ["db"]


def test_the_engine_metric_reads_the_daemons_of_engines_that_have_them() -> None:
    """engine:idle.pss for Docker (dockerd, containerd); podman, daemonless, is named as
    not applicable with why; runtimes without an engine are not mentioned."""
    from bench.backends import BACKENDS
    from bench.harness.plan import SUITES
    from bench.metrics.base import PlanInputs
    from bench.metrics.engine import ENGINE

    plan = PlanInputs([BACKENDS[n] for n in ("bare", "runc", "docker", "podman")], ["cpu"],
                      SUITES["quick"])
    assert ENGINE.groups(plan) == [("idle.pss", ["docker"])]
    assert [item["benchmark"] for item in ENGINE.not_applicable(plan)] == \
        ["engine:idle.pss:podman"]


def test_the_docker_daemons_are_read_for_real() -> None:
    from bench.backends.docker import DockerBackend
    from bench.errors import VmvcError
    from bench.metrics.engine import daemon_pss

    try:
        value = daemon_pss(DockerBackend.daemons)
    except VmvcError as exc:
        pytest.skip(str(exc))
    assert value > 10 << 20  # dockerd and containerd: tens of MiB here
    with pytest.raises(VmvcError, match="not running: vmvc-no-such-daemon"):
        daemon_pss(("vmvc-no-such-daemon",))
