"""``builtin-cli``: the suite's own runtime through its runc-compatible CLI,
``vmvc-runtime`` (one Python process per command, as an engine would run it)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from bench.backends.oci_cli import Bundle, OciCliBackend
from paths import BENCH_STATE_DIR


class BuiltinCliBackend(OciCliBackend):
    name = "builtin-cli"
    mounts_rootfs = False  # vmvc-runtime mounts the image named in the config's annotation
    harness_network = False  # its org.vmvc.network annotation puts the container on vmvc0
    # the same containers as builtin's, started through the CLI: in the quick suite only
    # what the CLI changes (startup, memory) and the audit; its workloads in the full suite
    quick_metrics = ("startup", "memory", "isolation")

    def address_of(self, bundle: Bundle) -> str | None:
        from runtime.state import StateStore

        state = StateStore(str(BENCH_STATE_DIR / self.name)).load(bundle.id)
        return state.network.get("address")

    def binary(self) -> str | None:
        beside = Path(sys.executable).parent / "vmvc-runtime"
        return str(beside) if beside.exists() else shutil.which("vmvc-runtime")
