"""The lxc backend against the real libvirtd and its LXC driver (the contract tests in
test_backends.py run on it too): an instance is a libvirt domain with a cgroup of
libvirt's, an overlay root in libvirtd's mount namespace, a libvirt_lxc log; none of these
outlives it, nor a killed harness once `vmvc cleanup` ran."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.backends import BackendContext
from bench.backends.lxc import ROOTS, LxcBackend, cleanup, mounted_in
from bench.errors import VmvcError
from paths import BENCH_WORKDIR


@pytest.fixture
def backend(tiny_image):
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    made = LxcBackend(BackendContext(tiny_image.oci_layout, tiny_image.disk, tiny_image.kernel,
                                     tiny_image.initramfs, BENCH_WORKDIR))
    reason = made.unavailable()
    if reason is not None:
        pytest.skip(reason)
    yield made
    made.close()


def traces(name: str) -> set[str]:
    """What an instance named *name* has on the host: its domain, cgroups, overlay root
    (in libvirtd's mount namespace or ours), dir and libvirt_lxc log."""
    from vmdriver.lxc import LOG_DIR, daemon_pid, leftover_domains

    found = {f"domain {d}" for d in leftover_domains() if d == name}
    found |= {f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/machine*/*{name}*")}
    directory = BENCH_WORKDIR / ROOTS / name
    found |= {f"mount in {pid}" for pid in (daemon_pid(), "self")
              if mounted_in(pid, directory / "rootfs")}  # type: ignore[arg-type]
    found |= {f"path {p}" for p in (directory, LOG_DIR / f"{name}.log") if p.exists()}
    return found


def test_an_instance_is_a_domain_that_leaves_nothing(backend: LxcBackend) -> None:
    """Running, it has every trace; its memory counts libvirt_lxc beside the init (both in
    the domain's cgroup); with network none it has lo only; its root is writable and
    private. Stopped, or timed to exit or to ready, it leaves nothing."""
    from vmdriver.lxc import NAME_PREFIX

    with backend.start() as instance:
        name = instance.name  # type: ignore[attr-defined]
        assert name.startswith(NAME_PREFIX)
        assert {t.split()[0] for t in traces(name)} == {"domain", "cgroup", "mount", "path"}
        reading = instance.memory()
        comms = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in reading.parts}
        assert comms == {"libvirt_lxc", "sleep"} and reading.cgroup > 0
        assert sum(reading.parts.values()) == reading.pss
        links = instance.exec(["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | "
                               "tr -d ' '; touch /etc/written && echo wrote"], 30)
        assert links.stdout.split() == ["lo", "wrote"], links.output
    assert traces(name) == set()
    assert not list(BENCH_WORKDIR.glob(f"{ROOTS}/*/rootfs/etc/written"))
    assert 0 < backend.time_to_exit(["true"]) < 30
    assert 0 < backend.time_to_ready(["sh", "-c", "echo ready; exec sleep 100"]) < 30
    assert not list((BENCH_WORKDIR / ROOTS).iterdir())


def test_exec_is_bounded_and_its_command_goes_with_the_timeout(backend: LxcBackend) -> None:
    with backend.start() as instance:
        start = time.monotonic()
        with pytest.raises(VmvcError, match="still running"):
            instance.exec(["sleep", "1000001"], 1)
        assert time.monotonic() - start < 10
        listed = instance.exec(["ps", "-o", "args"], 30).stdout
        assert "1000001" not in listed and "sleep 1000000" in listed  # the init stays
        missing = instance.exec(["nosuch-command"], 30)
        assert missing.exit_code == 127 and "nosuch-command" in missing.stderr


def test_an_unknown_command_is_one_line_before_anything_is_made(backend: LxcBackend) -> None:
    with pytest.raises(VmvcError, match=r"^lxc: nosuch: not found in the image"):
        backend.time_to_exit(["nosuch"])
    assert not list((BENCH_WORKDIR / ROOTS).iterdir())


KILLED = """
import os, signal, sys
from pathlib import Path
from bench.backends import BackendContext
from bench.backends.lxc import LxcBackend
from paths import BENCH_WORKDIR
layout, disk, kernel, initramfs = map(Path, sys.argv[1:])
backend = LxcBackend(BackendContext(layout, disk, kernel, initramfs, BENCH_WORKDIR))
print(backend.start().name, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_cleanup_removes_a_killed_runs_instance(backend: LxcBackend, tiny_image) -> None:
    """A harness killed with an instance running: auto-destroy takes the domain with the
    connection; `vmvc cleanup` takes the overlay root left in libvirtd's mount namespace,
    the instance's dir and its log."""
    image = tiny_image
    killed = subprocess.run([sys.executable, "-c", KILLED, str(image.oci_layout),
                             str(image.disk), str(image.kernel), str(image.initramfs)],
                            capture_output=True, text=True, timeout=120, check=False)
    name = killed.stdout.strip()
    assert killed.returncode == -9 and name, killed.stderr
    deadline = time.monotonic() + 30
    while "domain " + name in traces(name):
        assert time.monotonic() < deadline, "auto-destroy did not take the domain"
        time.sleep(0.1)
    assert {t.split()[0] for t in traces(name)} == {"mount", "path"}
    removed = cleanup(BENCH_WORKDIR)  # `vmvc cleanup`'s lxc part (the rest of it would take
    # what other sessions' tests are running)
    assert f"lxc overlay {BENCH_WORKDIR / ROOTS / name / 'rootfs'}" in removed
    assert traces(name) == set()
