#!/usr/bin/env python3
"""Benchmark of container start-up: vmvc-runtime against crun and runc, alternated in one run.

Targets (issue 3), on one busybox bundle running /bin/true with the default spec (Docker's
seccomp profile, all namespaces, cgroups):
  * library path: Runtime.run (create → start → exit → delete) median ≤ `crun run` median;
  * CLI path: `vmvc-runtime run` median ≤ `runc run` median.
Each round times every command once, in an order shuffled each round, so drift of the
machine and the cost of coming right after another command hit all alike.
The engine path (issue 14) is timed too: ``create --pid-file``, ``start``, the wait for the
exit, ``delete --force``, as podman (conmon) calls a runtime for ``podman run --rm``; this
script is the inits' subreaper, as conmon is, so it waits for the exit itself.
``--baseline DIR`` adds an older checkout of the repo (``git worktree add DIR <commit>``) to the
same rounds, library and CLI path both, to show what a change to the runtime costs.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from image.build import build_image  # noqa: E402
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


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdin=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


LIBRARY_WORKER = """
import sys, time
from runtime.container import Runtime
rt = Runtime(root=sys.argv[1], data=sys.argv[2])
for line in sys.stdin:
    start = time.perf_counter()
    code = rt.run(line.strip(), sys.argv[3])
    print(time.perf_counter() - start if code == 0 else -1, flush=True)
"""


class LibraryWorker:
    """The library path of one checkout (*tree*), in a process of its own: Runtime.run timed
    inside it, one container per request, so two checkouts alternate in one run."""

    def __init__(self, tree: Path, work: Path, bundle: Path, name: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LIBRARY_WORKER, str(work / f"{name}-state"),
             str(work / f"{name}-data"), str(bundle)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=env)

    def run(self, cid: str) -> float:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(cid + "\n")
        self.proc.stdin.flush()
        seconds = float(self.proc.stdout.readline())
        assert seconds >= 0, f"{cid} failed"
        return seconds

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class EngineCalls:
    """create + start + wait + delete of one runtime binary, as an engine calls them."""

    def __init__(self, argv: list[str], env: dict[str, str] | None, work: Path,
                 bundle: Path) -> None:
        self.argv, self.env, self.work, self.bundle = argv, env, work, bundle

    def _call(self, *args: str) -> None:
        subprocess.run([*self.argv, *args], check=True, stdin=subprocess.DEVNULL,
                       env=self.env)

    def run(self, cid: str) -> float:
        pid_file = self.work / f"{cid}.pid"
        start = time.perf_counter()
        self._call("create", "--bundle", str(self.bundle), "--pid-file", str(pid_file), cid)
        self._call("start", cid)
        _, status = os.waitpid(int(pid_file.read_text()), 0)
        self._call("delete", "--force", cid)
        seconds = time.perf_counter() - start
        assert os.waitstatus_to_exitcode(status) == 0, f"{cid} failed"
        return seconds


def become_subreaper() -> None:
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="an older checkout of this repo to time beside this one")
    args = parser.parse_args()
    trees = {"": REPO, **({" (baseline)": args.baseline.resolve()} if args.baseline else {})}
    for tree in trees.values():  # start-up from bytecode, as installed
        compileall.compile_dir(tree / "runtime", quiet=1)
    become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="vmvc-bench-runtime-"))
    workers: list[LibraryWorker] = []
    try:
        bundle = make_bundle(work)
        cli = str(Path(sys.executable).parent / "vmvc-runtime")
        commands: dict[str, tuple] = {}
        for suffix, tree in trees.items():
            worker = LibraryWorker(tree, work, bundle, f"lib{len(workers)}")
            workers.append(worker)
            env = {**os.environ, "PYTHONPATH": str(tree)}
            commands[f"library Runtime.run{suffix}"] = (worker, None)
            commands[f"vmvc-runtime run{suffix}"] = (
                [cli, "--root", str(work / f"cli-state{len(workers)}"), "run"], env)
            commands[f"vmvc-runtime create+start+delete{suffix}"] = (EngineCalls(
                [cli, "--root", str(work / f"engine-state{len(workers)}")], env, work,
                bundle), None)
        for peer in ("crun", "runc"):
            binary = shutil.which(peer)
            commands[f"{peer} run"] = ([binary, "--root", str(work / peer), "run"], None)
            commands[f"{peer} create+start+delete"] = (EngineCalls(
                [binary, "--root", str(work / f"{peer}-engine")], None, work, bundle), None)
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        order = random.Random(0)  # the same shuffles in every run of the script
        for i in range(args.warmup + args.rounds):
            # shuffled each round: what runs right after another runtime's delete pays for
            # the kernel's cleanup behind it (~5 ms after runc here), so no command may
            # always follow the same one (a rotation keeps the neighbours)
            round_order = names[:]
            order.shuffle(round_order)
            for name in round_order:
                how, env = commands[name]
                # an id (and so a cgroup name) of its own: re-creating the cgroup another
                # command just removed would time the kernel's teardown of the old one
                cid = f"vmvc-bench-{i}-{names.index(name)}"
                seconds = how.run(cid) if isinstance(how, (LibraryWorker, EngineCalls)) \
                    else timed([*how, cid], bundle, env)
                if i >= args.warmup:
                    times[name].append(seconds * 1000)
        for name, values in times.items():
            print(f"{name:33} median {statistics.median(values):6.1f} ms  "
                  f"(p10 {sorted(values)[len(values) // 10]:.1f}, "
                  f"p90 {sorted(values)[len(values) * 9 // 10]:.1f}, n={len(values)})")
    finally:
        for worker in workers:
            worker.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root")
    main()
