"""The container setup sequence against a recording fake of the syscall layer (youki's
pattern): the order of mounts, pivot_root and hardening is checked without root, beside
the real tests that run it as root."""

from __future__ import annotations

import os
from pathlib import Path

from runtime.config import parse_config
from runtime.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_REC,
    MS_SLAVE,
    PR_CAP_AMBIENT,
    PR_CAPBSET_DROP,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    PROC_SUPER_MAGIC,
    Linux,
)
from runtime.process import InitPlan, apply_identity, prepare_container
from runtime.spec import default_spec


class RecordingLinux:
    """Records every call; path lookups (openat2) are real, in the test's directory, and a
    mount target named by fd (/proc/self/fd/N) is recorded as the path it stands for. The
    files a real mknod would make are made, and the root after pivot_root is the rootfs, so
    the sequence goes on without root."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.real = Linux()
        self.cwd = "/"

    def openat2(self, *args: object) -> int:
        return self.real.openat2(*args)

    def capbset_read(self, number: int) -> bool | None:
        return self.real.capbset_read(number)

    def fstatfs_type(self, fd: int) -> int:
        return PROC_SUPER_MAGIC  # the rootfs stands in for every mount made on it

    def open_root(self) -> int:
        return os.open(self.cwd, os.O_PATH | os.O_DIRECTORY)

    def __getattr__(self, name: str):
        def record(*args: object) -> None:
            args = tuple(os.readlink(a) if isinstance(a, str) and a.startswith(
                "/proc/self/fd/") else a for a in args)
            self.calls.append((name, *args))
            if name == "mknod":
                Path(os.readlink(f"/proc/self/fd/{args[3]}"), str(args[0])).touch()
                self.calls[-1] = (name, os.path.join(os.readlink(f"/proc/self/fd/{args[3]}"),
                                                     str(args[0])), *args[1:3])
            elif name == "chdir" and args[0] != "/":
                self.cwd = str(args[0])
        return record

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def index(self, predicate) -> int:
        return next(i for i, call in enumerate(self.calls) if predicate(call))


def _spec(tmp_path: Path):
    config = default_spec(["/bin/true"])
    config["root"]["path"] = str(tmp_path / "rootfs")
    config["linux"]["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    config["hostname"] = "seq"
    return parse_config(config)


def test_setup_sequence(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    for directory in ("dev", "proc/acpi", "proc/bus"):  # a masked and a read-only path
        (rootfs / directory).mkdir(parents=True)
    spec = _spec(tmp_path)
    fake = RecordingLinux()
    plan = InitPlan(spec=spec, rootfs=str(rootfs), overlay=None, fifo="",
                    cgroup_v1_hierarchies=["cpu", "memory"], seccomp_bpf=None)
    assert prepare_container(plan, fake) is None
    calls = fake.calls
    # 1. propagation first: nothing mounted later may reach the host
    assert calls[0] == ("mount", None, "/", None, MS_SLAVE | MS_REC)
    # 2. the root bound onto itself (pivot_root needs a mount point)
    assert calls[1] == ("mount", str(rootfs), str(rootfs), None, MS_BIND | MS_REC)
    # 3. the spec's mounts in order, /dev's tmpfs before its device nodes
    targets = [c[2] for c in calls if c[0] == "mount" and c[2].startswith(str(rootfs))]
    assert targets[1:7] == [f"{rootfs}{d}" for d in ("/proc", "/dev", "/dev/pts", "/dev/shm",
                                                     "/dev/mqueue", "/sys")]
    dev_mount = fake.index(lambda c: c[0] == "mount" and c[2] == f"{rootfs}/dev")
    first_mknod = fake.index(lambda c: c[0] == "mknod")
    assert dev_mount < first_mknod
    assert {Path(c[1]).name for c in calls if c[0] == "mknod"} == {
        "null", "zero", "full", "random", "urandom", "tty"}
    # 4. pivot_root after every mount and node, then the old root detached
    pivot = fake.index(lambda c: c[0] == "pivot_root")
    assert pivot > first_mknod and calls[pivot - 1] == ("chdir", str(rootfs))
    assert ("umount2", ".", MNT_DETACH) in calls[pivot:pivot + 3]
    # 5. inside: hostname, read-only paths, then masks, read-only root, NNP last
    hostname = fake.index(lambda c: c[0] == "sethostname")
    assert hostname > pivot and calls[hostname] == ("sethostname", "seq")
    readonly = [c for c in calls[hostname:] if c[0] == "mount" and c[1] == c[2]]
    masked = fake.index(lambda c: c[0] == "mount" and c[-1] == "size=0k,nr_inodes=2")
    assert readonly and fake.calls.index(readonly[0]) < masked
    # 6. the cgroup file systems: after pivot_root, from inside (their namespace's view)
    cgroup_mounts = [i for i, c in enumerate(calls) if c[0] == "mount" and c[3] == "cgroup"]
    assert [calls[i][2] for i in cgroup_mounts] == [f"{rootfs}/sys/fs/cgroup/{name}"
                                                    for name in ("cpu", "memory")]
    assert min(cgroup_mounts) > pivot
    assert calls[-1] == ("prctl", PR_SET_NO_NEW_PRIVS, 1)
    assert ("setrlimit", 7, 1024, 1024) in calls  # RLIMIT_NOFILE


def test_identity_drops_bounding_before_the_user_changes(tmp_path: Path) -> None:
    spec = _spec(tmp_path).replace(uid=1000, gid=1000, additional_gids=[10])
    fake = RecordingLinux()
    apply_identity(spec, fake)
    names = fake.names()
    drops = [c[2] for c in fake.calls if c[0] == "prctl" and c[1] == PR_CAPBSET_DROP]
    assert 21 in drops and 5 not in drops  # CAP_SYS_ADMIN dropped, CAP_KILL kept
    keep_on = fake.calls.index(("prctl", PR_SET_KEEPCAPS, 1))
    assert names.index("setresuid") > keep_on > max(
        i for i, c in enumerate(fake.calls) if c[0] == "prctl" and c[1] == PR_CAPBSET_DROP)
    assert names.index("setgroups") < names.index("setresgid") < names.index("setresuid")
    assert ("setresuid", 1000) in fake.calls and ("setgroups", [10]) in fake.calls
    capset = fake.calls[names.index("capset")]
    assert capset[1] == capset[2] == (1 << 29) | (1 << 5) | (1 << 10)  # AUDIT_WRITE KILL NBS
    assert names.index("capset") > names.index("setresuid")
    assert fake.calls[-1][:2] == ("prctl", PR_CAP_AMBIENT)
