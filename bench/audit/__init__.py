"""The isolation audit: one probe script run in an instance of every backend (bare
included), judged against the host's own facts into yes/no answers with their evidence.

- probe.py: the script (POSIX sh and busybox, so the tiny image runs it too) and what it
  prints;
- host.py: the host's facts and the two marks the probe looks for (a process, a listener);
- judge.py: the answers, each check saying whether it keeps the instance from the host.
"""

from bench.audit.host import HostMarks, host_facts
from bench.audit.judge import CHECKS, Check, judge
from bench.audit.probe import PROBE, parse_probe

__all__ = ["CHECKS", "PROBE", "Check", "HostMarks", "host_facts", "judge", "parse_probe"]
