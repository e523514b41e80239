"""``vmvc cleanup``: remove whatever a killed run left (VMs, their overlays and sockets,
containers of every runtime, cgroups, overlay mounts, bare instances, the suite's bridge)."""

from __future__ import annotations

import argparse

from paths import BENCH_WORKDIR, RUNTIME_ROOT
from vmdriver.connection import DEFAULT_URI


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("cleanup", help="remove what a killed run left behind")
    parser.add_argument("--uri", default=DEFAULT_URI, help="libvirt URI (default: %(default)s)")
    parser.add_argument("--runtime-root", default=None,
                        help=f"vmvc-runtime state root (default: {RUNTIME_ROOT})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bench.backends.cleanup import cleanup as cleanup_bench
    from runtime.cleanup import cleanup as cleanup_containers
    from vmdriver.vm import cleanup as cleanup_vms

    removed = cleanup_vms(args.uri) + cleanup_bench(BENCH_WORKDIR) + \
        cleanup_containers(args.runtime_root or RUNTIME_ROOT)
    for item in removed:
        print(f"removed {item}")
    print(f"{len(removed)} item(s) removed" if removed else "nothing to clean up")
    return 0
