"""Shared fixtures: the images, and a session-wide check that nothing leaks.

The suite's rule is that no mount, QEMU or instance process, scratch or temporary directory
outlives the operation or test that made it; ``no_leaks`` compares the host before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from image.build import ImageArtifacts, build_image
from paths import image_cache_dir, image_scratch_dir

REPO = Path(__file__).resolve().parent.parent


ENGINE_STORE_MOUNTS = {"/var/lib/containers/storage/overlay"}
"""podman's overlay store: podman itself binds it onto itself on a container's start and
drops it when its last user goes, with no daemon to say which; setup makes it once. Not a
mount of the suite's."""


def _mount_points() -> set[str]:
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            } - ENGINE_STORE_MOUNTS


def _qemu_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith("qemu-system"):
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def instance_processes(session: int | None = None) -> set[str]:
    """Processes of a benchmark instance: bare's mark in their environment, or their root in
    an image layer (a chrooted process that lost its mark); with *session*, only those of
    that session (an orphan keeps it: how a run's leftovers are told from another's)."""
    from bench.backends.bare import MARK
    from runtime.container import DEFAULT_DATA

    layers = f"{DEFAULT_DATA}/layers/"
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            marked = f"\0{MARK}=".encode() in b"\0" + (entry / "environ").read_bytes()
            rooted = os.readlink(entry / "root").startswith(layers)
            in_session = session is None or \
                int((entry / "stat").read_text().rpartition(")")[2].split()[3]) == session
            if (marked or rooted) and in_session:
                found.add(f"{entry.name} {(entry / 'cmdline').read_bytes()!r}")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


def _vmvc_temp() -> set[str]:
    tmp = {p.name for pattern in ("vmvc-*", "mmdebstrap.*") for p in Path("/tmp").glob(pattern)}
    scratch = image_scratch_dir(image_cache_dir())
    return tmp | ({f"scratch/{p.name}" for p in scratch.iterdir()} if scratch.is_dir() else set())


@pytest.fixture(scope="session", autouse=True)
def no_leaks():
    before = (_mount_points(), _qemu_pids(), _vmvc_temp(), instance_processes())
    yield
    after = (_mount_points(), _qemu_pids(), _vmvc_temp(), instance_processes())
    assert after[0] <= before[0], f"mounts left behind: {after[0] - before[0]}"
    assert after[1] <= before[1], f"QEMU processes left behind: {after[1] - before[1]}"
    assert after[2] <= before[2], f"temporary dirs left behind: {after[2] - before[2]}"
    assert after[3] <= before[3], f"instance processes left behind: {after[3] - before[3]}"


@pytest.fixture(scope="session")
def full_image() -> ImageArtifacts:
    """The full image from the default cache (make setup built it)."""
    return build_image("full")


@pytest.fixture(scope="session")
def tiny_image() -> ImageArtifacts:
    return build_image("tiny")


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


def _vmvc_cgroups() -> set[str]:
    root = Path("/sys/fs/cgroup")
    return {str(p) for p in root.glob("*/vmvc*")} | {str(p) for p in root.glob("*/*/*/vmvc*")}


def _netns_and_veths() -> set[str]:
    names = {f"netns:{p.name}" for p in Path("/run/netns").glob("*")} \
        if Path("/run/netns").is_dir() else set()
    for link in Path("/sys/class/net").iterdir():
        if (link / "ifindex").exists() and link.name.startswith(("vmvc", "veth")):
            names.add(f"link:{link.name}")
    from runtime.network import FIREWALL_TABLE, Leases, firewall_present

    if firewall_present():  # the bridge's nftables table goes with the bridge
        names.add(f"nft:{FIREWALL_TABLE}")
    with Leases() as leases:  # an address goes back with its instance
        names |= {f"lease:{address} {owner}" for address, (owner, _) in leases.held().items()}
    return names


@pytest.fixture(scope="session", autouse=True)
def no_container_leaks():
    before = (_vmvc_cgroups(), _netns_and_veths())
    yield
    after = (_vmvc_cgroups(), _netns_and_veths())
    assert after[0] <= before[0], f"cgroups left behind: {after[0] - before[0]}"
    assert after[1] <= before[1], \
        f"network namespaces, links or nft tables left behind: {after[1] - before[1]}"


@pytest.fixture(scope="session")
def busybox_rootfs(tiny_image, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny image's layer unpacked: a busybox root filesystem for OCI bundles."""
    from runtime.oci_image import read_manifest, unpack_layers

    (layer,) = unpack_layers(read_manifest(tiny_image.oci_layout),
                             tmp_path_factory.mktemp("layers"))
    return layer


@pytest.fixture(params=["vmvc-runtime", "runc", "crun"])
def peer_runtime(request: pytest.FixtureRequest, tmp_path: Path):
    """vmvc-runtime, runc and crun in turn (tests/security.py): our runtime is held to its
    peers' behaviour in every run, not only when OCI_RUNTIME is set."""
    from tests.oci_runtime import PEERS, OciRuntime

    return OciRuntime(tmp_path / "state", PEERS[request.param])


@pytest.fixture
def crafted_rootfs(busybox_rootfs: Path, tmp_path: Path) -> Path:
    """A private copy of the busybox root filesystem, for an attacker to craft."""
    root = tmp_path / "rootfs"
    # cp -a: a device node in the shared rootfs is copied as a node, never read
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(root)], check=True, timeout=120)
    return root


# -- a real harness run shared by the harness and report tests ------------------------------
VMVC = str(Path(sys.executable).parent / "vmvc")
CONTAINERS = ["bare", "builtin", "builtin-cli", "runc", "crun", "docker", "podman", "gvisor",
              "lxc"]
SPIN = '''name = "spin"
description = "a busybox shell loop: CPU in the shell"
command = "i=0; while [ $i -lt {n} ]; do i=$((i+1)); done"
[params.n]
quick = 20000
full = 100000
[figure]
kind = "wall"
unit = "ms"
'''
DUO = '''name = "duo"
description = "several figures from one run: a throughput and a latency, made up"
command = "echo 'rps=1234.5 p99_ms=0.25'"
[figures.rps]
kind = "regex"
regex = 'rps=([0-9.]+)'
unit = "ops/s"
higher_is_better = true
[figures.p99]
kind = "regex"
regex = 'p99_ms=([0-9.]+)'
unit = "s"
scale = 1e-3
higher_is_better = false
'''
NAP = '''name = "nap"
description = "sleep 200 ms: the harness's own timing, checked"
command = ["sleep", "0.2"]
[figure]
kind = "wall"
unit = "ms"
'''



def vmvc(*args: str, workloads: Path | None = None, env: dict | None = None,
         timeout: float = 900) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **(env or {})}
    if workloads is not None:
        environ["VMVC_WORKLOADS_DIR"] = str(workloads)
    return subprocess.run([VMVC, *args], capture_output=True, text=True, env=environ,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def host_accelerator() -> str:
    """What `vmvc doctor` decides for this host ("kvm" or "tcg"): a run must say the same."""
    result = vmvc("doctor", "--json", timeout=300)
    return json.loads(result.stdout)["accelerator"]


@pytest.fixture(scope="session")
def workloads_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("workloads")
    (directory / "spin.toml").write_text(SPIN)
    (directory / "nap.toml").write_text(NAP)
    (directory / "duo.toml").write_text(DUO)
    return directory


@pytest.fixture(scope="session")
def container_run(tiny_image, workloads_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "containers"
    result = vmvc("run", "--image", "tiny", "--backends", ",".join(CONTAINERS),
                  "--workloads", "spin", "--density-max", "2", "--out", str(out), "--quiet",
                  workloads=workloads_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@dataclass(frozen=True)
class CiRun:
    out: Path  # the run dir
    summary: Path  # the Markdown the script appended to $GITHUB_STEP_SUMMARY
    env: dict[str, str]  # what the script ran with (the merge step runs with it too)


@pytest.fixture(scope="session")
def vm_run(full_image, workloads_dir: Path, tmp_path_factory) -> CiRun:
    """The VM's quick run, made as CI makes it (scripts/ci-bench.sh bench: setup, run,
    report, summary), once: the CI test checks the script, the harness tests the VM's
    benchmarks (under TCG a VM run is the suite's longest; one serves both)."""
    root = tmp_path_factory.mktemp("ci")
    out, summary = root / "runs" / "here", root / "step-summary.md"
    env = {**os.environ, "VMVC_SUITE": "quick", "VMVC_BACKENDS": "vm",
           "VMVC_WORKLOADS": "spin,rr", "VMVC_RUN_ARGS": "--vm-boots 1",
           "VMVC_WORKLOADS_DIR": str(workloads_dir), "GITHUB_STEP_SUMMARY": str(summary)}
    result = subprocess.run([str(REPO / "scripts" / "ci-bench.sh"), "bench", str(out)],
                            capture_output=True, text=True, env=env, timeout=1200, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return CiRun(out, summary, env)


