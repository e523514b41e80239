"""``vmvc doctor``: a table of what this host can run, and why not."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.host_checks import BACKENDS, DEFAULT_URI, failures_for, parse_backends, run_checks


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("doctor", help="what this host can run, and why not")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="backends whose needs decide the exit status (default: all)")
    parser.add_argument("--uri", default=DEFAULT_URI, help="libvirt URI (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="image cache directory")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    backends = parse_backends(args.backends)
    verdict, checks = run_checks(args.cache_dir, args.uri)
    failed = failures_for(checks, backends)
    if args.json:
        print(json.dumps({"accelerator": verdict.accelerator,
                          "checks": [c.as_json() for c in checks]}, indent=2))
        return 1 if failed else 0
    table = Table(title="vmvc doctor", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("detail")
    for check in checks:
        if check.ok:
            mark = "[green]ok[/]"
        elif check in failed:
            mark = "[red]FAIL[/]"
        else:
            mark = "[yellow]no[/]"
        detail = check.detail if check.ok else f"{check.detail}\n[dim]fix: {check.fix}[/]"
        table.add_row(check.name, mark, detail)
    console = Console()
    console.print(table)
    label = "kvm" if verdict.accelerator == "kvm" else "tcg (software emulation)"
    console.print(f"accelerator: {label}")
    if failed:
        console.print(f"[red]not ready for {', '.join(backends)}:[/] "
                      + ", ".join(c.name for c in failed))
    return 1 if failed else 0
