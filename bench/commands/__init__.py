"""The CLI's verbs, one module each: this list is the table of contents of ``vmvc``."""

from bench.commands import cleanup, doctor, image, workloads

COMMANDS = (doctor, image, workloads, cleanup)
