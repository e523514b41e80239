"""A pyperf benchmark script for one task on a host or container backend.

The harness runs ``python -m bench.harness.worker --task JSON <pyperf options>``; pyperf's
Runner then spawns its worker processes (this module again, with ``--worker``), warms up,
calibrates loops where they apply (startup), and writes one benchmark to ``-o FILE``.
The metric (bench/metrics/) registers its time function; instances it keeps between
values (cost: one per worker process) are stopped on exit.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pyperf

from bench.backends import BackendContext, make_backend
from bench.backends.base import Instance, defer_signals
from bench.metrics import METRICS


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
    context = BackendContext.from_json(task["context"])
    backend = make_backend(task["backend"], context)
    made: list[Instance] = []
    try:
        METRICS[task["metric"]].bench(runner, task, backend, context, made)
    finally:
        for instance in made:
            instance.stop()
        backend.close()


if __name__ == "__main__":
    main()
