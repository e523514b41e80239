"""vmvc-runtime: the built-in container runtime, with runc's command line.

The lifecycle verbs (spec, create, start, run, state, kill, delete, list, exec) arrive with
the runtime itself; this entry point is kept import-light because its start-up is measured.
"""

from __future__ import annotations

import argparse
import sys

from runtime.errors import ContainerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmvc-runtime", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/run/vmvc-runtime",
                        help="directory for container state (default: %(default)s)")
    parser.add_argument("--version", action="version", version="vmvc-runtime 0.1.0")
    parser.add_subparsers(dest="verb", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.verb is None:
            parser.print_usage(sys.stderr)
            print("vmvc-runtime: no command given", file=sys.stderr)
            return 2
    except ContainerError as exc:
        print(f"vmvc-runtime: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
