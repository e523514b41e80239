"""``vmvc report``: the command line of the report renderer (registered by bench's CLI)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("report", help="render the HTML report (or a Markdown summary)")
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="run dirs made by vmvc run (several: one panel per host)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="RUN_DIR",
                        help="compare against this run: changes and their significance")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="the report file (default: RUN_DIR/report.html or .md)")
    parser.add_argument("--format", choices=("html", "md"), default="html")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reports.render import render

    path = render(args.run_dirs, args.output, args.format, args.baseline)
    print(f"report: {path}")
    return 0
