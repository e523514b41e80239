#!/usr/bin/env python3
"""Where a container's syscall cost comes from: the `syscall` workload (dd bs=1, one-byte
reads and writes) on bare, in the built-in runtime as the harness runs it (Docker's seccomp
profile), and in the same container without the seccomp filter, alternated round by round.

If the filter is the cost, the last two differ and the filterless container matches bare.
(An earlier `syscall` workload, stress-ng --get, read the other way: its mix includes calls
Docker's profile refuses with EPERM at once, so containers skipped work and looked faster.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.backends import builtin, make_backend, oci_bundle  # noqa: E402
from bench.backends.base import BackendContext  # noqa: E402
from bench.harness.measure import cost  # noqa: E402
from bench.workloads import load_workloads  # noqa: E402
from image.build import build_image  # noqa: E402
from paths import BENCH_WORKDIR  # noqa: E402


def without_seccomp(*args, **kwargs) -> dict:
    config = oci_bundle.container_config(*args, **kwargs)
    config["linux"].pop("seccomp", None)
    return config


VARIANTS = {  # name → (backend, how its OCI config is made)
    "bare": ("bare", oci_bundle.container_config),
    "builtin (Docker's seccomp profile)": ("builtin", oci_bundle.container_config),
    "builtin without seccomp": ("builtin", without_seccomp),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    image = build_image("full")
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    context = BackendContext(image.oci_layout, image.disk, image.kernel, image.initramfs,
                             BENCH_WORKDIR)
    workload = load_workloads()["syscall"]
    values: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        for _ in range(args.rounds):
            for name, (backend_name, make_config) in VARIANTS.items():
                builtin.container_config = make_config  # the seam the library backend calls
                backend = make_backend(backend_name, context)
                try:
                    with backend.start() as instance:
                        values[name].append(cost(instance, workload, "quick"))
                finally:
                    backend.close()
    finally:
        builtin.container_config = oci_bundle.container_config
    bare = statistics.median(values["bare"])
    print(f"syscall workload, {args.rounds} rounds alternated, ns per system call (median, range)")
    for name, found in values.items():
        median = statistics.median(found)
        print(f"  {name:36s} {median:7.1f}  ({min(found):.1f} to {max(found):.1f})  "
              f"{median / bare:.3f}x bare")


if __name__ == "__main__":
    main()
