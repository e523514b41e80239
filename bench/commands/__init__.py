"""The CLI's verbs, one module each: this list is the table of contents of ``vmvc``."""

from bench.commands import cleanup, compare, doctor, image, run, workloads

COMMANDS = (doctor, image, workloads, run, compare, cleanup)
