"""The accelerator is decided once per run (the host checks) and handed down: a VM booted for
the run uses the run's verdict and vmdriver does not decide again on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.backends import BackendContext, make_backend
from vmdriver.vm import VmConfig, choose_accelerator


def _context(tmp_path: Path, **fields: object) -> BackendContext:
    return BackendContext(tmp_path / "oci", tmp_path / "disk", tmp_path / "vmlinuz",
                          tmp_path / "initramfs", tmp_path / "work", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("accelerator", ["kvm", "tcg"])
def test_the_vm_backend_boots_under_the_runs_verdict(tmp_path: Path, accelerator: str) -> None:
    backend = make_backend("vm", _context(tmp_path, accelerator=accelerator))
    assert backend.config().accelerator == accelerator  # type: ignore[attr-defined]


def test_a_given_accelerator_is_not_decided_again(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # $VMVC_ACCEL would win any decision vmdriver made; the verdict handed in must win instead,
    # and no probe verdict file may appear
    monkeypatch.setenv("VMVC_ACCEL", "kvm")
    probe_file = tmp_path / "kvm-probe.json"
    config = VmConfig(tmp_path / "vmlinuz", tmp_path / "initramfs", tmp_path / "disk",
                      accelerator="tcg", probe_cache=probe_file)
    verdict = choose_accelerator(config)
    assert (verdict.accelerator, verdict.libvirt_domain_type) == ("tcg", "qemu")
    assert not probe_file.exists()


def test_without_a_verdict_vmdriver_decides(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Library use (no run around it) keeps vmdriver's own decision."""
    monkeypatch.setenv("VMVC_ACCEL", "kvm")
    config = VmConfig(tmp_path / "vmlinuz", tmp_path / "initramfs", tmp_path / "disk")
    assert config.accelerator == "auto" and choose_accelerator(config).accelerator == "kvm"
