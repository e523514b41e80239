"""Storage on the host (issue 11, item 4 and part of 9): what containers leave on disk stays
out of host users' reach, and bare instances cannot make the shared image layer writable.

A container's writable root is a dir on the host. A workload that drops a setuid-root copy
of a shell there would hand root to any host user who can reach that dir; the image layers
hold the image's own setuid files. So while a container of each kind runs, a real
unprivileged host user (uid/gid 65534, no groups) tries to stat, open and execute the file
the workload dropped, by its host path: EACCES every time. The data dirs start as an older
installation left them (0755): the runtime must fix them on use, not only when it makes
them.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.backends import BackendContext, make_backend
from bench.backends.oci_cli import CliInstance
from runtime.container import DEFAULT_DATA, Runtime
from runtime.spec import default_spec
from tests.oci_runtime import new_id

NOBODY = 65534
DROPPED = "vmvc-suid"
# a setuid-root shell in the container's writable root, then idle
DROP_SUID_SHELL = ["/bin/sh", "-c", f"cp /bin/busybox /{DROPPED} && chmod 4755 /{DROPPED} && "
                   "exec sleep 1000"]
OLD_MODE = 0o755  # what every dir had before


def attempts_as_nobody(path: Path) -> dict[str, int]:
    """errno of stat, open and execute of *path* by a real unprivileged host user (0: it
    worked), in a forked child that drops to uid/gid 65534 without groups."""
    read_fd, write_fd = os.pipe()  # close-on-exec: EOF when the child exits or execs
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            for attempt in (lambda: os.stat(path),
                            lambda: os.close(os.open(path, os.O_RDONLY))):
                try:
                    attempt()
                    os.write(write_fd, b"0 ")
                except OSError as exc:
                    os.write(write_fd, f"{exc.errno} ".encode())
            try:  # a busybox that runs `true`: the setuid shell would have worked
                os.execv(path, [str(path), "true"])
            except OSError as exc:
                os.write(write_fd, f"{exc.errno} ".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        codes = [int(word) for word in pipe.read().split()]
    os.waitpid(pid, 0)
    codes += [0] * (3 - len(codes))  # no exec errno: the exec happened
    return dict(zip(("stat", "open", "exec"), codes, strict=True))


def refused(path: Path) -> None:
    assert attempts_as_nobody(path) == {"stat": errno.EACCES, "open": errno.EACCES,
                                        "exec": errno.EACCES}, path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wait_for_drop(upper: Path) -> Path:
    """The setuid file in the running container's upper dir (as root sees it)."""
    dropped = upper / DROPPED
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if dropped.exists() and dropped.stat().st_mode & stat.S_ISUID:
            return dropped
        time.sleep(0.02)
    raise AssertionError(f"the workload left no setuid file at {dropped}")


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A dir every host user may pass (as /var/lib is): only the modes under it protect."""
    top = Path(tempfile.mkdtemp(prefix="vmvc-sec-storage-", dir="/var/tmp"))
    os.chmod(top, OLD_MODE)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def old_installation(data: Path) -> Path:
    """The runtime's data dir as installations made before this fix have it."""
    for sub in ("", "layers", "containers", "seccomp"):
        (data / sub).mkdir(exist_ok=True)
        os.chmod(data / sub, OLD_MODE)
    return data


def check_data_modes(data: Path, container_id: str) -> None:
    assert mode(data) == 0o711  # passed by user-namespaced roots; entries private
    assert mode(data / "containers") == 0o711
    assert mode(data / "containers" / container_id) == 0o700
    assert mode(data / "layers") == 0o700
    assert mode(data / "seccomp") == 0o700


def container_config(args: list[str]) -> dict:
    config = default_spec(args)
    config["root"]["readonly"] = False
    return config


def test_library_containers_upper_dir_is_out_of_host_users_reach(tiny_image,
                                                                    reachable: Path) -> None:
    data = old_installation(reachable / "data")
    runtime = Runtime(reachable / "state", data)
    (reachable / "bundle").mkdir()
    cid = new_id()
    runtime.create(cid, reachable / "bundle", container_config(DROP_SUID_SHELL),
                   image=tiny_image.oci_layout)
    try:
        runtime.start(cid)
        dropped = wait_for_drop(data / "containers" / cid / "upper")
        assert runtime.state(cid)["status"] == "running"
        refused(dropped)
        (layer,) = (data / "layers").iterdir()
        refused(layer / "bin" / "busybox")  # the image's own files too
        check_data_modes(data, cid)
    finally:
        runtime.delete(cid, force=True)
    assert not (data / "containers" / cid).exists()


@pytest.mark.parametrize("name", ["builtin-cli", "runc", "crun"])
def test_cli_containers_upper_dir_is_out_of_host_users_reach(
        name: str, tiny_image, reachable: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vmvc-runtime CLI (its data dir from VMVC_RUNTIME_DATA), and runc and crun on the
    overlay roots the harness mounts for them in its work dir."""
    data = old_installation(reachable / "data")
    monkeypatch.setenv("VMVC_RUNTIME_DATA", str(data))  # the CLI's, in its own process
    workdir = reachable / "bench"
    workdir.mkdir(mode=OLD_MODE)
    os.chmod(workdir, OLD_MODE)
    backend = make_backend(name, BackendContext(tiny_image.oci_layout, tiny_image.disk,
                                                tiny_image.kernel, tiny_image.initramfs,
                                                workdir))
    if backend.unavailable():
        pytest.skip(backend.unavailable())
    instance = backend.start(DROP_SUID_SHELL)
    assert isinstance(instance, CliInstance)
    bundle = instance.bundle
    try:
        if backend.mounts_rootfs:  # runc, crun: the harness's overlay
            upper, layers = bundle.dir / "upper", Path(DEFAULT_DATA, "layers")
        else:
            upper, layers = data / "containers" / bundle.id / "upper", data / "layers"
        refused(wait_for_drop(upper))
        refused(bundle.dir / "rootfs" / DROPPED)  # and through the mounted overlay root
        assert mode(workdir) == 0o700
        assert mode(layers) == 0o700
        if not backend.mounts_rootfs:
            check_data_modes(data, bundle.id)
    finally:
        instance.stop()
    assert not bundle.dir.exists()


def test_a_user_namespaced_container_still_reaches_its_image(tiny_image,
                                                             reachable: Path) -> None:
    """Its root is an unprivileged host uid that mounts the overlay itself: the data dirs
    let it pass (its own dir is its root's, the layers grant it --x), nobody else."""
    data = old_installation(reachable / "data")
    runtime = Runtime(reachable / "state", data)
    (reachable / "bundle").mkdir()
    config = container_config(["/bin/sh", "-c", "/bin/busybox true && exec sleep 1000"])
    config["linux"]["namespaces"].append({"type": "user"})
    host_root = 100000
    for key in ("uidMappings", "gidMappings"):
        config["linux"][key] = [{"containerID": 0, "hostID": host_root, "size": 65536}]
    cid = new_id()
    runtime.create(cid, reachable / "bundle", config, image=tiny_image.oci_layout)
    try:
        runtime.start(cid)
        time.sleep(0.2)
        assert runtime.state(cid)["status"] == "running"  # `true` from the image layer ran
        own = data / "containers" / cid
        assert (own.stat().st_uid, own.stat().st_gid, mode(own)) == (host_root, host_root,
                                                                      0o700)
        assert mode(data / "layers") & 0o007 == 0  # the ACL names uid 100000 only
        (layer,) = (data / "layers").iterdir()
        refused(layer / "bin" / "busybox")
        refused(own / "upper")
    finally:
        runtime.delete(cid, force=True)


# -- bare: the shared layer stays read-only -------------------------------------------------
def layer_attack(layer: Path) -> str:
    """Every way a root shell in the instance might make the layer writable: remount it,
    bind it anew and remount that, unmount it, mount the disk it lives on once more (the
    host's /dev is there); then try to write through each."""
    device, on_disk = disk_of(layer)
    return (
        "mount -o remount,rw / 2>&1; "
        "mount -o remount,rw,bind / 2>&1; "
        "mkdir -p /tmp/again /tmp/disk && mount --bind / /tmp/again 2>&1 && "
        "mount -o remount,rw,bind /tmp/again 2>&1; "
        f"mount -t ext4 {device} /tmp/disk 2>&1; "
        "umount -l / 2>&1; "
        f"for target in /etc /tmp/again/etc /tmp/disk{on_disk}/etc; do "
        "touch $target/vmvc-was-here 2>/dev/null && echo WROTE $target; done; "
        "umount /tmp/again /tmp/disk 2>/dev/null; echo done")


def disk_of(path: Path) -> tuple[str, str]:
    """The block device *path*'s file system is on, and *path* relative to its root."""
    dev = path.stat().st_dev
    top = path
    while top.parent != top and top.parent.stat().st_dev == dev:
        top = top.parent
    uevent = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/uevent").read_text()
    name = next(line.split("=", 1)[1] for line in uevent.splitlines()
                if line.startswith("DEVNAME="))
    return f"/dev/{name}", f"/{path.relative_to(top)}" if path != top else ""


@pytest.fixture
def bare_context(tiny_image, reachable: Path, monkeypatch: pytest.MonkeyPatch) -> BackendContext:
    # a layer store of the test's own: should the attack succeed, it writes no shared layer
    monkeypatch.setattr("bench.backends.bare.RUNTIME_DATA", reachable / "data")
    return BackendContext(tiny_image.oci_layout, tiny_image.disk, tiny_image.kernel,
                          tiny_image.initramfs, reachable / "bench")


def finished_output(path: Path) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("done\n"):
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"the attack did not finish: {path}")


def test_bare_root_cannot_remount_the_shared_layer_writable(bare_context) -> None:
    """A bare workload runs as root: it must not make the layer writable, neither as the
    instance's own process nor as a command run in the instance (joined through nsenter).
    (Writes to the raw disk through the host's /dev are not tried: bare is the host.)"""
    backend = make_backend("bare", bare_context)
    layer = backend.root()
    assert layer.is_relative_to(bare_context.workdir.parent)
    attack = layer_attack(layer)
    with backend.start(["/bin/sh", "-c", f"{{ {attack}; }} > /tmp/outcome; "
                        "exec sleep 1000"]) as instance:
        own = finished_output(instance.scratch / "tmp" / "outcome")
        joined = instance.exec(["/bin/sh", "-c", attack], 30)
    for output in (own, joined.stdout):
        assert "WROTE" not in output and output.endswith("done\n"), output
    assert not (layer / "etc" / "vmvc-was-here").exists()
    assert mode(bare_context.workdir) == 0o700
