"""The CLI's verbs, one module each: this list is the table of contents of ``vmvc``.
``report`` lives with the renderer in reports/ (bench runs benchmarks, it renders nothing)."""

from bench.commands import cleanup, compare, doctor, image, run, workloads
from reports import command as report

COMMANDS = (doctor, image, workloads, run, compare, report, cleanup)
