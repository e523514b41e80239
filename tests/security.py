"""Shared pieces of the security tests (tests/test_security_*.py; their fixtures
``peer_runtime`` and ``crafted_rootfs`` are in conftest.py): every attack runs for real,
against vmvc-runtime and against its peers runc and crun in the same run, and reads its
evidence (file system types, access checks, status lines) without writing host state."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.oci_runtime import PEERS, OciRuntime, new_id, write_bundle


def is_ours(runtime: OciRuntime) -> bool:
    return runtime.binary == PEERS["vmvc-runtime"]


def run_bundle(runtime: OciRuntime, config: dict, bundle: Path,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``run`` the bundle in the foreground; afterwards no container may be left."""
    proc = runtime("run", "--bundle", str(write_bundle(bundle, config)), new_id(),
                   timeout=timeout)
    assert runtime("list", "-q").stdout.split() == []
    return proc


def facts(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

