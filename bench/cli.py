"""vmvc: VMs versus containers, measured. One image, identical workloads, side by side.

Each verb lives in its own module under bench/commands/ and registers itself here; the
suite's errors become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys

from bench.commands import COMMANDS
from bench.errors import VmvcError
from image.errors import ImageError
from reports.errors import ReportError
from results import ResultsError
from runtime.errors import ContainerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmvc", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (VmvcError, ImageError, ContainerError, ReportError, ResultsError) as exc:
        print(f"vmvc: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file system refusing: name the file and the reason
        where = f": {exc.filename}" if exc.filename else ""
        print(f"vmvc: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vmvc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
