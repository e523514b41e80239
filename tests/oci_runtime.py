"""Driving an OCI runtime binary the way engines do: vmvc-runtime by default, or any
runc-compatible runtime named by ``OCI_RUNTIME`` (runc, crun), as youki's and crun's
conformance suites do. The same tests then hold every runtime to the same behaviour."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from runtime.spec import default_spec

RUNTIME = os.environ.get("OCI_RUNTIME") or str(Path(sys.executable).parent / "vmvc-runtime")
BUILTIN = Path(RUNTIME).name == "vmvc-runtime"


def new_id() -> str:
    """Container ids carry "vmvc" so anything leaked is easy to spot on the host."""
    return f"vmvctest-{uuid.uuid4().hex[:10]}"


PEERS = {"vmvc-runtime": str(Path(sys.executable).parent / "vmvc-runtime"),
         "runc": "/usr/bin/runc", "crun": "/usr/bin/crun"}
"""Every runtime the security tests attack, ours and its peers, in one run."""


class OciRuntime:
    def __init__(self, state_root: Path, binary: str | None = None) -> None:
        self.root = state_root
        self.binary = binary or RUNTIME

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the runtime; output through files, not pipes: a detached container keeps the
        runtime's stdio open, and waiting for a pipe's end would wait for the container."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run([self.binary, "--root", str(self.root), *args], stdout=out,
                                  stderr=err, stdin=subprocess.DEVNULL, timeout=timeout,
                                  check=False)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(),
                                               err.read())


def make_config(rootfs: Path, args: list[str], **linux: object) -> dict:
    config = copy.deepcopy(default_spec(args))
    config["root"]["path"] = str(rootfs)
    config["linux"].update(linux)
    return config


def write_bundle(bundle: Path, config: dict) -> Path:
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle
