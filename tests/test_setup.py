"""``make setup`` is idempotent: run again (make test ran it just before), it changes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHANGES = ("installing", "creating .venv", "updating .venv", "starting", "restarting", "mounting")


def test_second_setup_changes_nothing() -> None:
    proc = subprocess.run([REPO / "scripts/setup.sh"], capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    steps = [line for line in output.splitlines() if "==>" in line]
    assert not [s for s in steps if any(change in s for change in CHANGES)], steps
    assert output.count(": cached, sha256:") == 2  # full and tiny images: both cache hits
    assert "rootfs digest" not in output  # nothing was rebuilt
