"""Packaging: the console scripts, and a runtime whose start-up imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("pandas", "matplotlib", "libvirt", "pyperf", "numpy", "rich", "jinja2")
BIN = Path(sys.executable).parent


def test_runtime_imports_none_of_the_suites_heavy_dependencies() -> None:
    code = ("import sys, runtime, runtime.cli, runtime.oci_image; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_vmvc_runtime_help_is_import_light() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runtime.cli", "--help"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "vmvc-runtime" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}
    assert not imported & set(HEAVY)


def test_console_scripts_are_installed() -> None:
    runtime_help = subprocess.run([BIN / "vmvc-runtime", "--help"], capture_output=True,
                                  text=True, check=True).stdout
    assert "--root" in runtime_help
    vmvc_help = subprocess.run([BIN / "vmvc", "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "doctor" in vmvc_help and "image" in vmvc_help


def test_vmvc_runtime_without_a_command_fails_in_one_line() -> None:
    proc = subprocess.run([BIN / "vmvc-runtime"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "vmvc-runtime: no command given"
