"""gVisor's runsc as a backend (tests/test_backends.py's contract tests run it too): an
instance is a sandbox running gVisor's kernel, its memory figure is the whole sandbox's
(sentry and gofer), and nothing of it outlives it, not even what a killed ``runsc create``
leaves; ``vmvc cleanup`` removes a killed run's containers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from bench.backends import BackendContext
from bench.backends.base import IDLE
from bench.backends.gvisor import GvisorBackend
from bench.backends.oci_cli import BUNDLES, Bundle
from bench.backends.runsc_sandboxes import CGROUP_ROOT, STATE_ROOT, sandbox_processes
from bench.errors import VmvcError
from paths import BENCH_WORKDIR


@pytest.fixture
def gvisor(tiny_image) -> GvisorBackend:
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    backend = GvisorBackend(BackendContext(tiny_image.oci_layout, tiny_image.disk,
                                           tiny_image.kernel, tiny_image.initramfs,
                                           BENCH_WORKDIR, accelerator="tcg"))
    reason = backend.unavailable()
    if reason is not None:
        pytest.skip(reason)
    return backend


def leftovers(container_id: str) -> list[str]:
    """Whatever of the container is still on the host: a sandbox or gofer process, a cgroup
    in any hierarchy, a mount, its bundle, runsc's state or lock files."""
    found = [f"process {pid}" for pid, _ in sandbox_processes(container_id)]
    found += [str(p) for p in CGROUP_ROOT.glob(f"*/vmvc-{container_id}")]
    found += [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if container_id in line]
    found += [str(p) for p in STATE_ROOT.glob(f"*{container_id}*")]
    bundle = BENCH_WORKDIR / BUNDLES / container_id
    return found + ([str(bundle)] if bundle.exists() else [])


def test_an_instance_is_a_sandbox_whose_memory_is_the_sentrys_and_the_gofers(
        gvisor: GvisorBackend) -> None:
    with gvisor.start() as instance:
        container_id = instance.bundle.id  # type: ignore[attr-defined]
        roles = {Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(): str(pid)
                 for pid, _ in sandbox_processes(container_id)}
        reading = instance.memory()
        seen = instance.exec(["sh", "-c", "dmesg | head -n 1; tail -n +3 /proc/net/dev | "
                              "cut -d: -f1 | tr -d ' '"], 30)
    assert seen.exit_code == 0, seen.stderr
    kernel, *links = seen.stdout.splitlines()
    assert kernel.endswith("Starting gVisor...") and links == ["lo"]  # gVisor's, not the host's
    assert set(roles) == {"runsc-sandbox", "runsc-gofer"}
    assert all(reading.parts[pid] > 0 for pid in roles.values())  # both in the cgroup
    assert sum(reading.parts.values()) == reading.pss and reading.cgroup > 0
    assert leftovers(container_id) == []
    assert "--platform=ptrace" in gvisor.startup_definition  # tcg: no KVM platform tried


def test_a_killed_create_leaves_nothing_once_deleted(gvisor: GvisorBackend) -> None:
    """runsc records a container after its sandbox and gofer run: a create killed (or timed
    out) before that leaves processes and cgroups that `runsc delete` does not know of;
    the backend's delete removes them all the same."""
    bundle = Bundle(gvisor, IDLE)
    try:
        bundle.mount_root()
        create = subprocess.Popen([*gvisor.command(), "create", "--bundle", str(bundle.dir),
                                   bundle.id], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bundle.created = True  # as far as the harness knows
        deadline = time.monotonic() + 30
        while len(sandbox_processes(bundle.id)) < 2 and create.poll() is None:
            assert time.monotonic() < deadline, "runsc create started no sandbox"
            time.sleep(0.002)
        create.kill()
        create.wait()
        assert len(sandbox_processes(bundle.id)) == 2
        assert not list(STATE_ROOT.glob(f"*{bundle.id}.state"))  # runsc knows of none
    finally:
        bundle.remove()
    assert leftovers(bundle.id) == []


def test_cleanup_removes_a_killed_runs_container(gvisor: GvisorBackend) -> None:
    """What `vmvc cleanup` runs, narrowed to this container (another session may run
    gvisor instances)."""
    from bench.backends.cleanup import remove_runtime_containers
    from bench.backends.runsc_sandboxes import remove_sandboxes

    instance = gvisor.start()
    bundle = instance.bundle  # type: ignore[attr-defined]
    removed = remove_runtime_containers(STATE_ROOT, bundle.id)  # as if the harness was killed
    removed += remove_sandboxes(bundle.id)
    assert removed == [f"gvisor container {bundle.id}"]
    assert sandbox_processes(bundle.id) == []
    bundle.created = False  # its overlay root and bundle dir, as cleanup removes them
    instance.stop()
    assert leftovers(bundle.id) == []


def test_the_bridge_is_refused_with_its_reason(gvisor: GvisorBackend) -> None:
    assert not GvisorBackend.bridge
    with pytest.raises(VmvcError, match="network 'bridge': only none"):
        gvisor.start(network="bridge")
