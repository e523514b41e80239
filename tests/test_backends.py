"""The backends' contracts, directly (the harness tests drive them through `vmvc run`):
bare cannot write the shared image layer, `ready` means the line "ready", stdout and stderr
stay apart, and every instance leaves nothing behind."""

from __future__ import annotations

import pytest

from bench.backends import BackendContext, make_backend
from bench.errors import VmvcError
from bench.harness.runner import BENCH_WORKDIR

HOST_AND_CONTAINERS = ["bare", "builtin", "builtin-cli", "runc", "crun"]


@pytest.fixture
def context(tiny_image) -> BackendContext:
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    return BackendContext(tiny_image.oci_layout, tiny_image.disk, tiny_image.kernel,
                          tiny_image.initramfs, BENCH_WORKDIR)


def test_bare_cannot_write_the_shared_layer(context: BackendContext) -> None:
    backend = make_backend("bare", context)
    with backend.start() as instance:
        refused = instance.exec(["touch", "/etc/vmvc-was-here"], 30)
        assert refused.exit_code != 0 and "Read-only" in refused.stderr
        assert instance.exec(["touch", "/tmp/x", "/var/tmp/y"], 30).exit_code == 0
    assert not (backend.root() / "etc" / "vmvc-was-here").exists()
    assert not list(BENCH_WORKDIR.glob("bare-*"))


@pytest.mark.parametrize("name", HOST_AND_CONTAINERS)
def test_exec_keeps_stdout_and_stderr_apart(name: str, context: BackendContext) -> None:
    backend = make_backend(name, context)
    with backend.start() as instance:
        outcome = instance.exec(["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
    assert (outcome.exit_code, outcome.stdout, outcome.stderr) == (3, "out\n", "err\n")
    assert not list((BENCH_WORKDIR / "bundles").glob("*"))


@pytest.mark.parametrize("name", ["bare", "builtin", "crun"])
def test_ready_is_the_line_ready_not_any_line(name: str, context: BackendContext) -> None:
    backend = make_backend(name, context)
    assert backend.time_to_ready(["sh", "-c", "echo ready; exec sleep 100"]) < 10
    with pytest.raises(VmvcError, match="expected 'ready'"):
        backend.time_to_ready(["sh", "-c", "echo 'sh: nosuch: not found'; exec sleep 100"])
