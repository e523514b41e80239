"""The one home of every cache, state and work dir: its overrides, and that it agrees with
the runtime's own defaults and imports nothing of the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import paths
from runtime import container

SUITE = ("bench", "image", "vmdriver", "runtime", "reports", "results")


def _fresh(code: str, **env: str) -> str:
    """Run *code* in a new interpreter (paths reads the environment at import)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, **env}).stdout


def test_harness_uses_the_runtimes_own_dirs() -> None:
    # otherwise `vmvc-runtime list` misses the harness's containers and builtin-cli (whose
    # vmvc-runtime uses the runtime's defaults) unpacks the image's layers a second time
    assert str(paths.RUNTIME_ROOT) == container.DEFAULT_ROOT
    assert str(paths.RUNTIME_DATA) == container.DEFAULT_DATA


def test_environment_overrides_every_dir(tmp_path) -> None:
    code = ("import json, paths; print(json.dumps([str(paths.BENCH_WORKDIR), "
            "str(paths.VM_WORKDIR), str(paths.RUNTIME_DATA), str(paths.image_cache_dir()), "
            "str(paths.kvm_probe_file())]))")
    out = json.loads(_fresh(code, VMVC_BENCH_DIR=str(tmp_path / "b"),
                            VMVC_VM_DIR=str(tmp_path / "v"),
                            VMVC_RUNTIME_DATA=str(tmp_path / "r"),
                            VMVC_CACHE_DIR=str(tmp_path / "c")))
    assert out == [str(tmp_path / p) for p in ("b", "v", "r", "c", "c/kvm-probe.json")]


def test_cache_dir_follows_xdg_without_an_override(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VMVC_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", "import paths; print(paths.image_cache_dir())"],
                         capture_output=True, text=True, check=True,
                         env={**env, "XDG_CACHE_HOME": str(tmp_path)}).stdout
    assert out.strip() == str(tmp_path / "vmvc")


def test_paths_imports_nothing_of_the_suite() -> None:
    code = (f"import sys, paths; print(sorted(m for m in sys.modules "
            f"if m.split('.')[0] in {SUITE!r}))")
    assert _fresh(code).strip() == "[]"
