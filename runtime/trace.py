"""Start-up tracing: with VMVC_RUNTIME_TRACE=1 every process of a container's creation
prints ``vmvc-trace <monotonic ms> <pid> <label>`` on stderr (the runtime's own timing)."""

from __future__ import annotations

import os
import sys
import time

ENABLED = bool(os.environ.get("VMVC_RUNTIME_TRACE"))


def mark(label: str) -> None:
    if ENABLED:
        sys.stderr.write(f"vmvc-trace {time.monotonic() * 1000:.2f} {os.getpid()} {label}\n")
