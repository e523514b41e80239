"""``vmvc run``: every workload on every backend, measured with pyperf, into a run dir
(``results.json`` + ``manifest.json``); ``--resume DIR`` continues an interrupted run."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path

from bench.errors import VmvcError
from results import BACKEND_ORDER, METRICS

DEFAULT_RUNS = Path("runs")


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("run", help=f"run the benchmarks ({', '.join(METRICS)})")
    parser.add_argument("--suite", default=None, help="quick (default: ~10 min here) or full")
    parser.add_argument("--backends", default=None,
                        help="comma-separated (default: every backend but variants: "
                        f"{','.join(b for b in BACKEND_ORDER if b != 'bare-veth')})")
    parser.add_argument("--workloads", default=None,
                        help="comma-separated cost workloads (default: the built-ins, db only in "
                             "the full suite; "
                             "see vmvc workloads)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated: only these (default: all; a VM's boot phases "
                             "and memory come with its startup)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds: every benchmark again, backends alternated (default 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run dir (default: runs/<date-time>)")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="continue the run in DIR with its own settings")
    parser.add_argument("--image", choices=("full", "tiny"), default=None,
                        help="image profile (default full; tiny is busybox only)")
    parser.add_argument("--cpus", type=float, default=None,
                        help="CPU quota for container instances, in CPUs (default: none)")
    parser.add_argument("--memory-mib", type=int, default=None,
                        help="memory limit for container instances (default: none)")
    parser.add_argument("--density-max", type=int, default=None,
                        help="density: up to this many idle instances (quick 0, full 32)")
    parser.add_argument("--burst-max", type=int, default=None,
                        help="burst: only bursts of up to this many instances at once "
                             "(quick 4, full 1, 4, 16; 0: none)")
    parser.add_argument("--vm-boots", type=int, default=None,
                        help="VM boots for startup/boot-phase/memory (quick 2, full 10)")
    parser.add_argument("--vm-memory-mib", type=int, default=None, help="VM RAM (default 512)")
    parser.add_argument("--vm-vcpus", type=int, default=None, help="VM vCPUs (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=run)


def _settings_from_args(args: argparse.Namespace):
    from bench.harness.runner import FULL_SUITE_WORKLOADS, Settings

    settings = Settings()
    given = {"suite": args.suite, "repeat": args.repeat, "image": args.image, "cpus": args.cpus,
             "memory_mib": args.memory_mib, "density_max": args.density_max,
             "burst_max": args.burst_max,
             "vm_boots": args.vm_boots, "vm_memory_mib": args.vm_memory_mib,
             "vm_vcpus": args.vm_vcpus}
    for name, value in given.items():
        if value is not None:
            setattr(settings, name, value)
    if args.backends is not None:
        settings.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.workloads is not None:
        settings.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    elif settings.suite == "full":
        settings.workloads += list(FULL_SUITE_WORKLOADS)
    if args.metrics is not None:
        settings.metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    return settings


def run(args: argparse.Namespace) -> int:
    from bench.harness.runner import Harness, Settings, check_settings
    from bench.workloads import load_workloads
    from results import RunDir

    if os.geteuid() != 0:
        raise VmvcError("vmvc run needs root (namespaces, cgroups, mounts, libvirt)")
    if args.resume is not None:
        chosen = [a for a in ("suite", "backends", "workloads", "metrics", "repeat", "out",
                              "image", "cpus",
                              "memory_mib", "density_max", "burst_max", "vm_boots",
                              "vm_memory_mib",
                              "vm_vcpus") if getattr(args, a) is not None]
        if chosen:
            raise VmvcError(f"--resume continues with the run's own settings: drop "
                            f"--{chosen[0].replace('_', '-')}")
        rundir = RunDir(args.resume)
        previous = rundir.manifest()
        stored = asdict(previous.settings)
        settings = Settings(**{f.name: stored[f.name] for f in fields(Settings)
                               if f.name in stored})
    else:
        settings = _settings_from_args(args)
        out = args.out or DEFAULT_RUNS / datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
        rundir = RunDir(out)
        previous = None
    check_settings(settings, load_workloads())
    if args.resume is None:
        rundir.create()
    rundir.logs.mkdir(parents=True, exist_ok=True)
    harness = Harness(rundir, settings, quiet=args.quiet, previous=previous)
    code = harness.run()
    failures = harness.manifest.failures
    print(f"results: {rundir.results}")
    print(f"manifest: {rundir.manifest_path}")
    if failures:
        print(f"{len(failures)} benchmark(s) failed (reasons in the manifest); "
              f"retry them with: vmvc run --resume {rundir.path}")
    return code
