"""What a killed run of the harness can leave of its own, removed: runc/crun/runsc/vmvc-runtime
containers under the harness's state roots (and runsc sandboxes whose create was killed
before runsc recorded them), overlay roots it mounted for them, the network
namespaces it made for them (their address leases are pruned by runtime.cleanup), bare
instances' processes, memory cgroups and scratch dirs, lxc instances' domains and overlay
roots. (The built-in library's containers
and the VMs are cleaned by runtime.cleanup and vmdriver.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from bench.backends import netns
from bench.backends.bare import CGROUP_PREFIX, marked_pids
from bench.backends.gvisor import RUNSC, GvisorBackend
from bench.backends.oci_cli import BUNDLES
from bench.backends.runsc_sandboxes import remove_sandboxes
from paths import BENCH_STATE_DIR
from runtime.cgroups import MemoryAccount
from runtime.cleanup import leftover_cgroups
from runtime.errors import ContainerError
from runtime.linux import MNT_DETACH, Linux

RUNTIME_BINARIES = {GvisorBackend.name: RUNSC}  # a state root named by a backend, not its binary


def _mounted(path: Path) -> bool:
    target = str(path)
    return any(line.split()[4] == target
               for line in Path("/proc/self/mountinfo").read_text().splitlines())


def remove_bare_cgroups(prefix: str = CGROUP_PREFIX) -> list[str]:
    """Bare instances' memory cgroups (named *prefix*…): their processes killed (a process
    that cleared its environment has no mark), the cgroups removed."""
    removed = []
    for rel in leftover_cgroups():
        if rel.startswith(prefix):
            account = MemoryAccount(rel)
            for pid in account.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                account.delete()
                removed.append(f"bare memory cgroup {rel}")
            except ContainerError as exc:
                removed.append(f"bare memory cgroup {rel}: {exc}")
    return removed


def remove_engine_containers() -> list[str]:
    """Docker's and podman's containers named by the harness (vmvc-bench-…), removed;
    the image it imported stays, as a pulled one would."""
    from bench.backends.engine import NAME_PREFIX

    removed = []
    for engine in ("/usr/bin/docker", "/usr/bin/podman"):
        if not os.path.exists(engine):
            continue
        try:
            listed = subprocess.run([engine, "ps", "--all", "--quiet", "--filter",
                                     f"name={NAME_PREFIX}", "--format", "{{.Names}}"],
                                    capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            continue
        for name in listed.stdout.split():
            if name.startswith(NAME_PREFIX):
                subprocess.run([engine, "rm", "--force", *(["--time", "0"] if "podman" in engine
                                                             else []), name], capture_output=True,
                               timeout=60, check=False)
                removed.append(f"{Path(engine).name} container {name}")
    return removed


def remove_runtime_containers(root: Path, only: str = "") -> list[str]:
    """The containers of the runtime whose state root is *root* (named by the backend:
    runc, crun, gvisor), deleted by the runtime itself; *only*: that one alone."""
    binary = shutil.which(RUNTIME_BINARIES.get(root.name, root.name))
    if binary is None:
        return []
    removed = []
    listed = subprocess.run([binary, "--root", str(root), "list", "--quiet"],
                            capture_output=True, text=True, timeout=60, check=False)
    for container_id in listed.stdout.split():
        if only and container_id != only:
            continue
        subprocess.run([binary, "--root", str(root), "delete", "--force", container_id],
                       capture_output=True, timeout=60, check=False)
        removed.append(f"{root.name} container {container_id}")
    return removed


def cleanup(workdir: Path) -> list[str]:
    removed = []
    if BENCH_STATE_DIR.is_dir():
        for root in sorted(BENCH_STATE_DIR.iterdir()):
            if root.name == "builtin-cli":
                from runtime.cleanup import cleanup as cleanup_containers

                removed += [f"{item} ({root})" for item in cleanup_containers(str(root))]
                continue
            removed += remove_runtime_containers(root)
    removed += remove_sandboxes()
    removed += remove_engine_containers()
    from bench.backends.lxc import cleanup as cleanup_lxc

    removed += cleanup_lxc(workdir)
    bundles = workdir / BUNDLES
    if bundles.is_dir():
        for bundle in sorted(bundles.iterdir()):
            rootfs = bundle / "rootfs"
            if _mounted(rootfs):
                Linux().umount2(str(rootfs), MNT_DETACH)
                removed.append(f"overlay {rootfs}")
            shutil.rmtree(bundle, ignore_errors=True)
            removed.append(f"bundle {bundle}")
    for name in netns.leftovers():  # the containers that joined them are gone by now
        netns.remove(netns.BridgedNetns(name, ""))
        removed.append(f"network namespace {name}")
    netns.unmount_if_empty()
    for pid in marked_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"bare process {pid}")
    removed += remove_bare_cgroups()
    if workdir.is_dir():
        for scratch in sorted(workdir.glob("bare-*")):
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(f"bare scratch dir {scratch}")
    return removed

