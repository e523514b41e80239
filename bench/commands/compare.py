"""``vmvc compare A B``: every benchmark two runs share, B against A, with pyperf's
significance test (the one ``python -m pyperf compare_to`` uses), read in each figure's
own direction: a cost figure that is higher-is-better is *better* when it goes up."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.errors import VmvcError
from reports.compare import compare
from results import format_value, read_suite


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("compare", help="compare two runs, with significance")
    parser.add_argument("baseline", type=Path, help="run dir (or results.json) A")
    parser.add_argument("changed", type=Path, help="run dir (or results.json) B")
    parser.add_argument("--all", action="store_true", help="show not significant changes too")
    parser.set_defaults(handler=run)


def _fmt(value: float, unit: str) -> str:
    return format_value(value, unit, digits=4)


def run(args: argparse.Namespace) -> int:
    a, b = read_suite(args.baseline), read_suite(args.changed)
    rows = compare(a, b)
    if not rows:
        raise VmvcError(f"{args.baseline} and {args.changed} share no benchmark")
    table = Table(title=f"vmvc compare: {args.changed} against {args.baseline}",
                  title_justify="left")
    for column in ("benchmark", "A", "B", "B / A", "verdict"):
        table.add_column(column)
    shown = 0
    for row in rows:
        if row["significant"] or row["change"] is None or args.all:
            shown += 1
            colour = {"better": "green", "worse": "red"}.get(row["verdict"], "dim")
            table.add_row(row["name"], _fmt(row["a"], row["unit"]),
                          _fmt(row["b"], row["unit_b"]),
                          "-" if row["change"] is None else f"{row['change']:.3f}x",
                          f"[{colour}]{row['verdict']}[/]")
    console = Console()
    if shown:
        console.print(table)
    hidden = len(rows) - shown
    console.print(f"{len(rows)} shared benchmark(s); "
                  f"{sum(r['verdict'] == 'worse' for r in rows)} worse, "
                  f"{sum(r['verdict'] == 'better' for r in rows)} better"
                  + (f", {hidden} not significant (--all shows them)" if hidden else ""))
    return 0
