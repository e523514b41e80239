"""One instance of a burst (burst.py), in a process of its own: made ready, started on the
harness's release, reported, stopped when told. ``python -m bench.metrics.burst_starter
BACKEND CONTEXT_JSON RELEASE_FD REPORT_FD STOP_FD``."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from bench.backends import BackendContext, make_backend


def starter(backend_name: str, context: BackendContext, release_r: int, report_w: int,
            stop_r: int) -> int:
    """A starter process: make the backend, say ``waiting``, start one instance on the
    release, report when it is up, stop it when told. Signals are the harness's business
    (it tells every starter to stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    backend = make_backend(backend_name, context)
    instance = None
    try:
        os.write(report_w, b"waiting\n")
        os.read(release_r, 1)
        try:
            instance = backend.start()
            os.write(report_w, f"up {time.monotonic()!r}\n".encode())
        except Exception as exc:  # the harness says which and why
            os.write(report_w, f"error {exc}".replace("\n", " ").encode() + b"\n")
        os.read(stop_r, 1)
    finally:
        if instance is not None:
            instance.stop()
        backend.close()
    return 0


if __name__ == "__main__":
    name, fields, *fds = sys.argv[1:]
    sys.exit(starter(name, BackendContext.from_json(json.loads(fields)), *map(int, fds)))
