#!/usr/bin/env python3
"""Benchmark of the image cache: how long `vmvc image build` takes cold and cached.

Target (issue 2): a second build with nothing changed takes under 2 s. Runs the real CLI,
as a user would, alternating the profiles in one run so machine drift hits both alike:
  * cached full build (default cache; make setup built it) and cached tiny build, N rounds;
  * one cold tiny build in a fresh cache dir (package index, kernel download included);
  * with --cold-full, one cold full build in a fresh cache dir too (~30 s, ~1 GB).
Prints medians and the artifact sizes (apparent and allocated).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VMVC = [sys.executable, "-m", "bench"]


def timed_build(*args: str) -> tuple[float, dict]:
    start = time.perf_counter()
    out = subprocess.run([*VMVC, "image", "build", "--json", *args], capture_output=True,
                         text=True, check=True).stdout
    return time.perf_counter() - start, json.loads(out)


def sizes(contract: dict) -> str:
    entry = Path(contract["disk"]).parent
    rows = []
    for name in ("oci", "disk.ext4", "vmlinuz", "initramfs.img"):
        path = entry / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        apparent = sum(p.stat().st_size for p in files)
        allocated = sum(p.stat().st_blocks * 512 for p in files)
        rows.append(f"{name} {apparent / 2**20:.1f} MiB ({allocated / 2**20:.1f} MiB on disk)")
    return "; ".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cold-full", action="store_true")
    args = parser.parse_args()
    cached: dict[str, list[float]] = {"full": [], "tiny": []}
    contracts = {}
    for profile in cached:  # warm: make sure both exist before timing cache hits
        _, contracts[profile] = timed_build("--profile", profile)
    for _ in range(args.rounds):
        for profile in cached:
            seconds, _ = timed_build("--profile", profile)
            cached[profile].append(seconds)
    for profile, values in cached.items():
        print(f"cached {profile}: median {statistics.median(values):.2f} s "
              f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})")
    cold = ["tiny"] + (["full"] if args.cold_full else [])
    for profile in cold:
        scratch = Path(tempfile.mkdtemp(prefix="vmvc-bench-cache-"))
        try:
            seconds, contract = timed_build("--profile", profile, "--cache-dir", str(scratch))
            print(f"cold {profile}: {seconds:.1f} s; {sizes(contract)}")
        finally:
            shutil.rmtree(scratch)
    for profile, contract in contracts.items():
        print(f"{profile} artifacts: {sizes(contract)}")


if __name__ == "__main__":
    main()
