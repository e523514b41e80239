"""The OCI config every container backend runs: runc's template with Docker's seccomp
profile (runtime.spec.default_spec), a writable root, the suite's limits, and a cgroup
named ``vmvc-<id>`` so a killed run's leftovers are found by ``vmvc cleanup``."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

from bench.backends.base import Limits
from runtime.oci_image import read_manifest, unpack_layers
from runtime.spec import default_spec

CPU_PERIOD_US = 100_000
_TEMPLATE: dict | None = None


def new_id() -> str:
    return f"bench-{uuid.uuid4().hex[:10]}"


def container_config(argv: list[str], container_id: str, limits: Limits,
                     annotations: dict[str, str] | None = None,
                     cpus: set[int] | None = None) -> dict:
    global _TEMPLATE
    if _TEMPLATE is None:  # resolving Docker's profile for this host takes ~10 ms
        _TEMPLATE = default_spec(["true"])
    config = copy.deepcopy(_TEMPLATE)
    config["process"]["args"] = list(argv)
    config["root"]["readonly"] = False
    config["linux"]["cgroupsPath"] = f"/vmvc-{container_id}"
    resources = config["linux"].setdefault("resources", {})
    if limits.cpus is not None:
        resources["cpu"] = {"quota": int(limits.cpus * CPU_PERIOD_US), "period": CPU_PERIOD_US}
    if cpus:  # a cpuset: the container's processes run on these CPUs only
        resources.setdefault("cpu", {})["cpus"] = cpu_list(cpus)
    if limits.memory_mib is not None:
        resources["memory"] = {"limit": limits.memory_mib << 20}
    if annotations:
        config["annotations"] = dict(annotations)
    return config


def cpu_list(cpus: set[int]) -> str:
    """The kernel's list form of a CPU set (cpuset.cpus, taskset --cpu-list): 0,2,3."""
    return ",".join(str(cpu) for cpu in sorted(cpus))


def image_layers(oci_layout: Path, store: Path) -> list[Path]:
    """The image's layers unpacked (once, shared with the built-in runtime's store)."""
    return unpack_layers(read_manifest(oci_layout), store)
