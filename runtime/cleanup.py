"""What a killed run of the suite can leave of containers, removed: containers in a state
root, ``vmvc-*`` cgroups, the suite's bridge and its nftables table."""

from __future__ import annotations

import os
import signal

from runtime import cgroups
from runtime.container import DEFAULT_ROOT, Runtime
from runtime.errors import ContainerError
from runtime.light import suppress
from runtime.state import STATE_FILE


def leftover_cgroups(root: str = cgroups.ROOT) -> list[str]:
    """Relative paths of ``vmvc-*`` cgroups at the top of this host's hierarchies."""
    names = set()
    tops = [root] if cgroups.is_unified(root) else [os.path.join(root, c)
                                                    for c in cgroups.V1_CONTROLLERS]
    for top in tops:
        if os.path.isdir(top):
            names |= {n for n in os.listdir(top)
                      if n.startswith(cgroups.DEFAULT_PREFIX) and os.path.isdir(
                          os.path.join(top, n))}
    return sorted(names)


HALF_CREATED_AGE = 60.0  # seconds: a live create writes its state file within milliseconds


def _half_created(state_root: str) -> list[str]:
    """State dirs a killed ``create`` left without a state file (so no container to delete):
    removed once they are older than any create in progress could be."""
    import shutil
    import time

    removed = []
    if not os.path.isdir(state_root):
        return removed
    for name in sorted(os.listdir(state_root)):
        path = os.path.join(state_root, name)
        if name.startswith(".") or not os.path.isdir(path) or \
                os.path.exists(os.path.join(path, STATE_FILE)):
            continue
        if time.time() - os.stat(path).st_mtime > HALF_CREATED_AGE:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"half-created container dir {path}")
    return removed


def cleanup(state_root: str = DEFAULT_ROOT) -> list[str]:
    removed = []
    runtime = Runtime(root=state_root)
    for container_id in runtime.store.ids():
        try:
            runtime.delete(container_id, force=True)
            removed.append(f"container {container_id}")
        except ContainerError as exc:
            removed.append(f"container {container_id}: {exc}")
    removed += _half_created(state_root)
    for rel in leftover_cgroups():
        cgroup = cgroups.at(rel)
        for pid in cgroup.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            cgroup.delete()
            removed.append(f"cgroup {rel}")
        except ContainerError as exc:
            removed.append(f"cgroup {rel}: {exc}")
    from runtime import network

    with network.Leases() as leases:  # the bridge goes with its last lease
        removed += leases.prune()
        if not leases.held():
            if os.path.exists(f"/sys/class/net/{network.BRIDGE}"):
                network.remove_bridge()
                removed.append(f"bridge {network.BRIDGE}")
            if network.firewall_present():  # a run killed between bridge and table
                network.remove_firewall()
                removed.append(f"nftables table {network.FIREWALL_TABLE}")
    return removed
