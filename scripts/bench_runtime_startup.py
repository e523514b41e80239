#!/usr/bin/env python3
"""Benchmark of container start-up: vmvc-runtime against crun and runc, alternated in one run.

Targets (issue 3), on one busybox bundle running /bin/true with the default spec (Docker's
seccomp profile, all namespaces, cgroups):
  * library path: Runtime.run (create → start → exit → delete) median ≤ `crun run` median;
  * CLI path: `vmvc-runtime run` median ≤ `runc run` median.
Each round times every command once, in turn, so drift of the machine hits all alike.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.image.build import build_image  # noqa: E402
from runtime.container import Runtime  # noqa: E402
from runtime.oci_image import read_manifest, unpack_layers  # noqa: E402
from runtime.spec import default_spec  # noqa: E402


def make_bundle(work: Path) -> Path:
    image = build_image("tiny")
    (layer,) = unpack_layers(read_manifest(image.oci_layout), work / "layers")
    bundle = work / "bundle"
    bundle.mkdir()
    config = default_spec(["/bin/true"])
    config["root"]["path"] = str(layer)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    compileall.compile_dir(REPO / "runtime", quiet=1)  # start-up from bytecode, as installed
    work = Path(tempfile.mkdtemp(prefix="vmvc-bench-runtime-"))
    try:
        bundle = make_bundle(work)
        rt = Runtime(root=work / "lib-state", data=work / "lib-data")
        cli = str(Path(sys.executable).parent / "vmvc-runtime")
        commands = {
            "library Runtime.run": None,
            "vmvc-runtime run": [cli, "--root", str(work / "cli-state"), "run"],
            "crun run": [shutil.which("crun"), "--root", str(work / "crun"), "run"],
            "runc run": [shutil.which("runc"), "--root", str(work / "runc"), "run"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(args.warmup + args.rounds):
            for name, argv in commands.items():
                cid = f"vmvc-bench-{i}"
                if argv is None:
                    start = time.perf_counter()
                    code = rt.run(cid, bundle)
                    seconds = time.perf_counter() - start
                    assert code == 0
                else:
                    seconds = timed([*argv, cid], bundle)
                if i >= args.warmup:
                    times[name].append(seconds * 1000)
        for name, values in times.items():
            print(f"{name:22} median {statistics.median(values):6.1f} ms  "
                  f"(p10 {sorted(values)[len(values) // 10]:.1f}, "
                  f"p90 {sorted(values)[len(values) * 9 // 10]:.1f}, n={len(values)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root")
    main()
