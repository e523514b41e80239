"""The backends' contracts, directly (the harness tests drive them through `vmvc run`):
bare cannot write the shared image layer, `ready` means the line "ready", stdout and stderr
stay apart, and every instance leaves nothing behind."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from bench.backends import BackendContext, make_backend
from bench.backends.base import Limits
from bench.errors import VmvcError
from bench.harness import measure
from bench.metrics import density as density_metric
from paths import BENCH_WORKDIR
from runtime.container import DEFAULT_ROOT
from tests.conftest import instance_processes

HOST_AND_CONTAINERS = ["bare", "builtin", "builtin-cli", "runc", "crun", "docker", "podman",
                       "gvisor", "lxc"]
ENGINES = ["docker", "podman"]
SET_UP = [*ENGINES, "gvisor", "lxc"]  # what make setup may have failed to provide: skipped,
# saying why


@pytest.fixture
def context(tiny_image) -> BackendContext:
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    return BackendContext(tiny_image.oci_layout, tiny_image.disk, tiny_image.kernel,
                          tiny_image.initramfs, BENCH_WORKDIR)


def make_available(name: str, context: BackendContext):
    """The backend, or a skip with its own reason (an engine, runsc: not set up)."""
    backend = make_backend(name, context)
    reason = backend.unavailable()
    if reason is not None and name in SET_UP:
        pytest.skip(reason)
    return backend


def test_bare_cannot_write_the_shared_layer(context: BackendContext) -> None:
    backend = make_backend("bare", context)
    with backend.start() as instance:
        refused = instance.exec(["touch", "/etc/vmvc-was-here"], 30)
        assert refused.exit_code != 0 and "Read-only" in refused.stderr
        assert instance.exec(["touch", "/tmp/x", "/var/tmp/y"], 30).exit_code == 0
    assert not (backend.root() / "etc" / "vmvc-was-here").exists()
    assert not list(BENCH_WORKDIR.glob("bare-*"))


def test_bare_stops_its_first_process_even_without_its_mark(context: BackendContext) -> None:
    """bare finds an instance's processes by the mark in their environment, which a process
    can drop (env -i here) and which reads empty while it is in execve (`ready`'s shell
    exec'ing sleep): its first process is stopped by its pid all the same."""
    backend = make_backend("bare", context)
    before = instance_processes()
    instance = backend.start(["env", "-i", "sleep", "1000000"])
    try:
        deadline = time.monotonic() + 10
        while b"sleep" not in Path(f"/proc/{instance.main.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "env did not exec sleep"
            time.sleep(0.01)
    finally:
        instance.stop()
    assert instance_processes() <= before


def test_bare_stops_a_daemon_that_dropped_its_mark(context: BackendContext) -> None:
    """A server started in a running instance (a service's setup) that clears or rewrites
    its environment (nginx does; redis-server's process title overwrites it) is found by
    the instance's own user namespace: the quick suite once left nginx and redis-server
    listening on the host's 8080 and 6379."""
    backend = make_backend("bare", context)
    before = instance_processes()
    with backend.start() as instance:
        started = instance.exec(["/bin/sh", "-c", "env -i sleep 1000001 >/dev/null 2>&1 &"],
                                timeout=10)
        assert started.exit_code == 0
        deadline = time.monotonic() + 10
        while not [p for p in instance_processes() - before if "1000001" in p]:
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.01)
    assert instance_processes() <= before


@pytest.mark.parametrize("name", HOST_AND_CONTAINERS)
def test_exec_keeps_stdout_and_stderr_apart(name: str, context: BackendContext) -> None:
    backend = make_available(name, context)
    with backend.start() as instance:
        outcome = instance.exec(["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
    assert (outcome.exit_code, outcome.stdout, outcome.stderr) == (3, "out\n", "err\n")
    assert not list((BENCH_WORKDIR / "bundles").glob("*"))


@pytest.mark.parametrize("name", ["bare", "builtin", "crun", "docker", "podman", "gvisor",
                                  "lxc"])
def test_ready_is_the_line_ready_not_any_line(name: str, context: BackendContext) -> None:
    backend = make_available(name, context)
    assert backend.time_to_ready(["sh", "-c", "echo ready; exec sleep 100"]) < 10
    with pytest.raises(VmvcError, match="expected 'ready'"):
        backend.time_to_ready(["sh", "-c", "echo 'sh: nosuch: not found'; exec sleep 100"])


def containers() -> set[str]:
    """The harness's container cgroups (``vmvc-<id>``) and the runtime's state dirs."""
    return {str(p) for p in Path("/sys/fs/cgroup").glob("*/vmvc-*")} | \
        {str(p) for p in Path(DEFAULT_ROOT).glob("*")}


def test_density_stops_at_the_hosts_free_memory(context: BackendContext) -> None:
    """A memory limit of just under half the free memory: N=1 fits, N=2 would not, so the
    density run stops there, says why in its metadata, and leaves no container behind."""
    available = measure.host_available_bytes() - density_metric.HOST_RESERVE_BYTES
    limits = Limits(memory_mib=int(available * 0.6) >> 20)
    backend = make_backend("builtin", dataclasses.replace(context, limits=limits))
    before = containers()
    benchmark = density_metric.density(backend, [1, 2, 4], 0.0, {"name": "density:idle:builtin"})
    runs = benchmark.get_runs()
    assert [r.get_metadata()["vmvc_instances"] for r in runs] == [1]
    assert containers() == before
    assert runs[0].get_metadata()["vmvc_density_capped"].startswith("N=2 not run: 2 x ")


def test_density_refuses_a_first_step_that_cannot_fit(context: BackendContext) -> None:
    limits = Limits(memory_mib=(measure.host_available_bytes() >> 20) + 1)
    backend = make_backend("builtin", dataclasses.replace(context, limits=limits))
    with pytest.raises(VmvcError, match=r"^density: N=1 not run: 1 x \d+ MiB") as caught:
        density_metric.density(backend, [1, 2], 0.0, {"name": "density:idle:builtin"})
    assert "\n" not in str(caught.value)


def test_only_bounded_instances_are_refused() -> None:
    gib = 1 << 30
    assert density_metric.step_refused(32, None, gib) is None  # idle containers, bare: KiB
    assert density_metric.step_refused(4, gib, 5 * gib) is None  # 4 GiB + the 1 GiB reserve
    assert density_metric.step_refused(5, gib, 5 * gib) == \
        "N=5 not run: 5 x 1024 MiB (what one instance may take) + 1 GiB for the host " \
        "> 5.0 GiB available"


def test_an_idle_bare_instance_is_accounted_in_a_memory_cgroup_of_its_own(
        context: BackendContext) -> None:
    """Accounting, not isolation: its first process is in it before it runs, its usage is
    read as a container's, and it goes with the instance. A command's daemon stays out of
    it (a cgroup move would land in the command's timing) and is still stopped with it."""
    backend = make_backend("bare", context)
    with backend.start() as instance:
        account = instance.account
        assert account is not None and Path(account.dir).is_dir()
        assert Path(account.dir).name == f"vmvc-{instance.id}"
        daemon = instance.exec(["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"], 30)
        assert daemon.exit_code == 0 and daemon.stdout.strip()
        assert instance.main is not None and set(account.pids()) == {instance.main.pid}
        members = set(instance.pids())
        assert len(members) == 2  # main and the daemon, by its mark
        reading = instance.memory()
        assert reading.cgroup > 0 and reading.pss > 0
        assert set(reading.parts) == {str(instance.main.pid)}
    assert not Path(account.dir).exists()
    assert not any(alive(pid) for pid in members)


def alive(pid: int) -> bool:
    """Running (a zombie awaiting init's reaping is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("name", ["builtin", "crun"])
def test_a_containers_idle_memory_is_its_cgroup_and_its_processes_pss(
        name: str, context: BackendContext) -> None:
    backend = make_backend(name, context)
    with backend.start() as instance:
        reading = instance.memory()
    assert reading.cgroup > 0 and reading.pss > 0 and len(reading.parts) == 1  # its sleep
    assert sum(reading.parts.values()) == reading.pss


def test_cleanup_removes_a_killed_bare_instances_memory_cgroup(context: BackendContext) -> None:
    """What `vmvc cleanup` runs, narrowed to this instance's cgroup (other sessions' bare
    instances may be running)."""
    from bench.backends.cleanup import remove_bare_cgroups

    instance = make_backend("bare", context).start()
    account = instance.account
    assert account is not None
    name = Path(account.dir).name
    removed = remove_bare_cgroups(name)  # as if the harness had been killed
    assert removed == [f"bare memory cgroup {name}"]
    assert not Path(account.dir).exists() and not any(alive(p) for p in instance.pids())
    instance.account = None
    instance.stop()


@pytest.mark.parametrize("name", ENGINES)
def test_an_engines_instance_counts_its_monitor_and_leaves_nothing(
        name: str, context: BackendContext) -> None:
    """The PSS figure adds the engine's per-container process (the shim, conmon), the
    init's parent; the container's cgroup holds the init alone. Stopped, the engine lists
    no container of the harness's; a time_to_exit leaves none either."""
    from bench.backends.engine import NAME_PREFIX, parent_of

    backend = make_available(name, context)
    with backend.start() as instance:
        reading = instance.memory()
        monitor = parent_of(instance.pid)  # type: ignore[attr-defined]
        comm = Path(f"/proc/{monitor}/comm").read_text().strip()
        outcome = instance.exec(["sh", "-c", "echo links=$(tail -n +3 /proc/net/dev | "
                                 "cut -d: -f1 | tr -d ' ')"], 30)
    assert comm.startswith({"docker": "containerd-shim", "podman": "conmon"}[name]), comm
    assert str(monitor) in reading.parts and reading.parts[str(monitor)] > 0
    assert sum(reading.parts.values()) == reading.pss and reading.cgroup > 0
    assert outcome.stdout.strip() == "links=lo"  # --network none: nothing of the host's
    assert backend.time_to_exit(["true"]) > 0
    listed = backend.cli("ps", "--all", "--format", "{{.Names}}").split()
    assert not [n for n in listed if n.startswith(NAME_PREFIX)]


def test_cleanup_removes_an_engines_leftover_container(context: BackendContext) -> None:
    """A killed run's docker/podman containers (named vmvc-bench-…) go with `vmvc cleanup`."""
    from bench.backends.cleanup import remove_engine_containers

    backend = make_available("podman", context)
    instance = backend.start()
    removed = remove_engine_containers()  # as if the harness had been killed
    assert f"podman container {instance.name}" in removed  # type: ignore[attr-defined]
    instance.removed = True  # type: ignore[attr-defined]
    listed = backend.cli("ps", "--all", "--format", "{{.Names}}").split()
    assert instance.name not in listed  # type: ignore[attr-defined]
