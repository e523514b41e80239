"""A build killed with SIGKILL leaves nothing running or mounted, and the next build
removes its scratch dir: nothing outlives the operation that made it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from image.build import build_image
from image.fs_cleanup import mounts_below
from paths import image_cache_dir


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def mmdebstrap_mounts(cache_dir: Path) -> bool:
    for pid in processes_mentioning(str(cache_dir)):
        try:
            if f"{cache_dir}/tmp/" in Path(f"/proc/{pid}/mountinfo").read_text():
                return True
        except OSError:
            continue
    return False


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_sigkill_during_mmdebstrap(tmp_path: Path, tiny_image) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    for part in ("apt", "debs"):  # skip the index download: get to mmdebstrap quickly
        shutil.copytree(image_cache_dir() / part, cache_dir / part, symlinks=True)
    builder = subprocess.Popen([sys.executable, "-m", "bench", "image", "build", "--profile",
                                "full", "--cache-dir", str(cache_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The dangerous moment: mmdebstrap has mounted /proc, /sys, /dev into the chroot
        # (in its own mount namespace, so they are looked for there).
        wait_until(lambda: mmdebstrap_mounts(cache_dir), 120,
                   "mmdebstrap to mount into the chroot")
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.wait()
    wait_until(lambda: not processes_mentioning(str(cache_dir)), 60,
               "mmdebstrap to exit after its parent was killed")
    # mmdebstrap mounts in a namespace of its own: none of it may show in the host's
    # (before that namespace, a killed mmdebstrap left /proc, /sys and /dev mounted here)
    assert mounts_below(cache_dir) == []
    leftovers = list((cache_dir / "tmp").iterdir())
    assert leftovers, "the killed build's scratch dir should still be there to clean"

    build_image("tiny", cache_dir)  # the next build removes the dead build's scratch
    assert list((cache_dir / "tmp").iterdir()) == []
    assert [p.name.split("-")[0] for p in (cache_dir / "images").iterdir()] == ["tiny"]
