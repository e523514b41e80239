"""What a killed run of the suite can leave of containers, removed: containers in a state
root, ``vmvc-*`` cgroups, the suite's bridge."""

from __future__ import annotations

import os
import signal

from runtime import cgroups
from runtime.container import DEFAULT_ROOT, Runtime
from runtime.errors import ContainerError
from runtime.light import suppress


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


def cleanup(state_root: str = DEFAULT_ROOT) -> list[str]:
    removed = []
    runtime = Runtime(root=state_root)
    for container_id in runtime.store.ids():
        try:
            runtime.delete(container_id, force=True)
            removed.append(f"container {container_id}")
        except ContainerError as exc:
            removed.append(f"container {container_id}: {exc}")
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
    if os.path.exists("/sys/class/net/vmvc0") and not runtime.list():
        from runtime import network

        network.remove_bridge_if_unused(0)
        removed.append("bridge vmvc0")
    return removed
