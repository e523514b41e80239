"""A pyperf benchmark script for one task on a host or container backend.

The harness runs ``python -m bench.harness.worker --task JSON <pyperf options>``; pyperf's
Runner then spawns its worker processes (this module again, with ``--worker``), warms up,
calibrates loops where they apply (startup), and writes one benchmark to ``-o FILE``.
Each worker process keeps one instance for its cost values and stops it on exit.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pyperf

from bench.backends import BackendContext, Limits, make_backend
from bench.backends.bare import BareBackend
from bench.backends.base import Instance, defer_signals, uninterruptible
from bench.harness import measure
from bench.harness.plan import STARTUP_WORKLOADS


def _task_args(cmd: list[str], args) -> None:
    cmd.extend(("--task", args.task))


def _die_with_parent() -> None:
    """A killed harness takes its workers along. pyperf's manager SIGKILLs its worker when
    it is itself interrupted, which would leave the worker's instance behind; so the manager
    only passes SIGTERM on to its worker and waits, and the worker ends at the next point
    where no instance is half made or half removed, unwinding from there."""
    from runtime.linux import Linux

    if "--worker" in sys.argv:
        defer_signals(lambda signum: sys.exit(128 + signum))
    else:
        signal.signal(signal.SIGTERM, _pass_on)
        signal.signal(signal.SIGINT, _pass_on)
    Linux().prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pass_on(_signum: int, _frame: object) -> None:
    """The manager's handler: SIGTERM to its children (the worker); pyperf then sees the
    worker fail and exits."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1] == me:
                    os.kill(int(entry.name), signal.SIGTERM)
            except (OSError, IndexError):
                continue


def main() -> None:
    _die_with_parent()
    runner = pyperf.Runner(program_args=("-m", "bench.harness.worker"),
                           add_cmdline_args=_task_args)
    runner.argparser.add_argument("--task", required=True, help="the task, as JSON")
    args = runner.parse_args()
    task = json.loads(args.task)
    fields = task["context"]
    context = BackendContext(
        **{k: Path(fields[k]) for k in ("oci_layout", "disk", "kernel", "initramfs", "workdir")},
        limits=Limits(**fields["limits"]), vm_memory_mib=fields["vm_memory_mib"],
        vm_vcpus=fields["vm_vcpus"], accelerator=fields["accelerator"])
    backend = make_backend(task["backend"], context)
    metadata = task["metadata"]
    instance: Instance | None = None
    host: Instance | None = None
    try:
        if task["metric"] == "startup":
            argv = STARTUP_WORKLOADS[task["workload"]]
            runner.bench_time_func(task["name"], lambda loops: measure.startup(
                backend, task["workload"], argv, loops), metadata=metadata)
        elif task["metric"] == "memory":
            runner.bench_time_func(task["name"], lambda loops: sum(
                measure.idle_memory(backend, task["settle"])[0] for _ in range(loops)),
                metadata=metadata)
        elif task["metric"] == "cost":
            from bench.workloads import load_workloads

            workload = load_workloads()[task["workload"]]

            def one(loops: int) -> float:
                nonlocal instance, host
                if instance is None:
                    bridged = bool(workload.host_command)
                    with uninterruptible():
                        instance = backend.start(network="bridge" if bridged else "none")
                        if bridged:  # the image's client on the host, in the host's network
                            host = BareBackend(context).start()
                return sum(measure.cost(instance, workload, task["suite"], host)
                           for _ in range(loops))

            runner.bench_time_func(task["name"], one, metadata=metadata)
        else:
            raise SystemExit(f"worker: unknown metric {task['metric']!r}")
    finally:
        for made in (instance, host):
            if made is not None:
                made.stop()
        backend.close()


if __name__ == "__main__":
    main()
