"""``vmvc workloads``: the workloads every backend can run, and where each comes from."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("workloads", help="list the workloads (built-in and added)")
    parser.set_defaults(handler=run)


def run(_args: argparse.Namespace) -> int:
    from bench.workloads import load_workloads, workload_dirs

    table = Table(title="vmvc workloads", title_justify="left")
    for column in ("name", "figure", "better", "command (quick suite)", "from"):
        table.add_column(column)
    for name, workload in sorted(load_workloads().items()):
        figures = [(f"{part}: " if part else "") + figure.unit
                   for part, figure in workload.figures.items()]
        better = ["higher" if f.higher_is_better else "lower" for f in workload.figures.values()]
        command = workload.argv("quick", workload.host_command or None)
        table.add_row(name, "\n".join(figures), "\n".join(better),
                      ("host: " if workload.host_command else "") + " ".join(command),
                      workload.source)
    console = Console()
    console.print(table)
    console.print("add one: a TOML file in " + " or ".join(str(d) for d in workload_dirs()[1:]))
    return 0
