"""Inside the container's mount namespace: the root filesystem, the spec's mounts, the
default devices, pivot_root, and the read-only and masked paths.

Every path inside the rootfs is resolved with symlinks followed *within* the rootfs, so a
symlink in the image can never redirect a mount or a device node onto the host.
"""

from __future__ import annotations

import os
import stat

from runtime.config import Device, Mount
from runtime.errors import ContainerError
from runtime.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_DIRSYNC,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
    Linux,
)

FLAGS = {  # option: (set?, flag)
    "ro": (True, MS_RDONLY), "rw": (False, MS_RDONLY), "nosuid": (True, MS_NOSUID),
    "suid": (False, MS_NOSUID), "nodev": (True, MS_NODEV), "dev": (False, MS_NODEV),
    "noexec": (True, MS_NOEXEC), "exec": (False, MS_NOEXEC), "sync": (True, MS_SYNCHRONOUS),
    "async": (False, MS_SYNCHRONOUS), "dirsync": (True, MS_DIRSYNC), "mand": (True, MS_MANDLOCK),
    "nomand": (False, MS_MANDLOCK), "atime": (False, MS_NOATIME), "noatime": (True, MS_NOATIME),
    "diratime": (False, MS_NODIRATIME), "nodiratime": (True, MS_NODIRATIME),
    "relatime": (True, MS_RELATIME), "norelatime": (False, MS_RELATIME),
    "strictatime": (True, MS_STRICTATIME), "nostrictatime": (False, MS_STRICTATIME),
    "bind": (True, MS_BIND), "rbind": (True, MS_BIND | MS_REC), "remount": (True, MS_REMOUNT),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC, "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
DEFAULT_DEVICES = (  # path, major, minor: the OCI runtime spec's default devices
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)
DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
                ("pts/ptmx", "/dev/ptmx"), ("/proc/kcore", "/dev/core"))


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """Mount options → (flags, propagation flags, data string for the file system)."""
    flags = propagation = 0
    data = []
    for option in options:
        if option in FLAGS:
            on, flag = FLAGS[option]
            flags = flags | flag if on else flags & ~flag
        elif option in PROPAGATION:
            propagation |= PROPAGATION[option]
        else:
            data.append(option)
    return flags, propagation, ",".join(data)


def resolve_in_root(root: str, path: str) -> str:
    """*path* inside *root*, following symlinks as if *root* were ``/`` (like chroot would).

    A component that is a symlink is replaced by its target, absolute targets restart at
    *root*; ``..`` never climbs above *root*. Missing trailing components are kept as is.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise ContainerError(f"too many symlinks resolving {path} in the rootfs")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _ensure_target(target: str, source_is_file: bool) -> None:
    if os.path.lexists(target):
        return
    if source_is_file:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass
    else:
        os.makedirs(target, exist_ok=True)


def mount_all(linux: Linux, rootfs: str, mounts: list[Mount]) -> list[Mount]:
    """Mount the spec's mounts under *rootfs*, in order, except the cgroup file systems and
    whatever lies below them: those are returned, to be mounted once the init is in its
    cgroup (namespace), from inside the new root (see :func:`mount_cgroups`)."""
    deferred: list[Mount] = []
    for mount in mounts:
        if mount.type == "cgroup" or any(_below(mount.destination, d.destination)
                                         for d in deferred):
            if "bind" in mount.options or "rbind" in mount.options:
                raise ContainerError(f"mount {mount.destination}: bind mounts below a cgroup "
                                     "mount are not supported by vmvc-runtime")
            _ensure_target(resolve_in_root(rootfs, mount.destination), False)
            deferred.append(mount)
            continue
        _mount_one(linux, rootfs, mount)
    return deferred


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def mount_cgroups(linux: Linux, deferred: list[Mount], cgroup_mount: callable) -> None:
    """The deferred mounts, inside the new root; *cgroup_mount* handles type cgroup."""
    for mount in deferred:
        if mount.type == "cgroup":
            cgroup_mount(resolve_in_root("/", mount.destination),
                         parse_options(mount.options)[0])
        else:
            _mount_one(linux, "/", mount)


def _mount_one(linux: Linux, rootfs: str, mount: Mount) -> None:
    target = resolve_in_root(rootfs, mount.destination)
    flags, propagation, data = parse_options(mount.options)
    if flags & MS_BIND:
        source = mount.source
        if data:
            raise ContainerError(f"mount {mount.destination}: bind option(s) {data} are not "
                                 "supported by vmvc-runtime")
        if not os.path.exists(source):
            raise ContainerError(f"mount {mount.destination}: source {source} does not exist")
        _ensure_target(target, not os.path.isdir(source))
        linux.mount(source, target, None, flags & (MS_BIND | MS_REC))
        remount = flags & ~(MS_BIND | MS_REC)
        if remount:  # bind mounts take ro, nosuid… only on a remount, one mount at a time
            points = submounts(target) if flags & MS_REC else [target]
            for point in points or [target]:
                linux.mount(None, point, None, MS_BIND | MS_REMOUNT | remount)
    else:
        _ensure_target(target, False)
        linux.mount(mount.source, target, mount.type, flags, data or None)
    if propagation:
        linux.mount(None, target, None, propagation)


def submounts(target: str) -> list[str]:
    """*target* and every mount below it, from this namespace's mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4]
            if point == target or point.startswith(target.rstrip("/") + "/"):
                found.append(point)
    return found


def make_devices(linux: Linux, rootfs: str, devices: list[Device]) -> None:
    """The default device nodes, the spec's devices, and /dev's usual symlinks."""
    for path, major, minor in DEFAULT_DEVICES:
        target = resolve_in_root(rootfs, path)
        if os.path.lexists(target):
            os.unlink(target)
        try:
            linux.mknod(target, stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(target, 0o666)
        except PermissionError:  # in a user namespace: bind the host's node (as runc does)
            with open(target, "w"):
                pass
            linux.mount(path, target, None, MS_BIND)
    for device in devices:
        target = resolve_in_root(rootfs, device.path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.unlink(target)
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        linux.mknod(target, kind[device.type] | (device.file_mode & 0o7777),
                    os.makedev(device.major, device.minor))
        os.chown(target, device.uid, device.gid)
    for source, path in DEV_SYMLINKS:
        target = resolve_in_root(rootfs, path)
        if not os.path.lexists(target):
            linux.symlink(source, target)


def pivot_into(linux: Linux, rootfs: str) -> None:
    """pivot_root(".", ".") from inside *rootfs*, then detach the old root (runc, crun)."""
    linux.chdir(rootfs)
    linux.pivot_root(".", ".")
    linux.mount(None, ".", None, MS_SLAVE | MS_REC)  # unmounts must not reach the host
    linux.umount2(".", MNT_DETACH)
    linux.chdir("/")


def make_readonly(linux: Linux, path: str) -> None:
    if not os.path.exists(path):
        return
    linux.mount(path, path, None, MS_BIND | MS_REC)
    linux.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC
                | _kept_flags(path))


def _kept_flags(path: str) -> int:
    """nosuid/nodev/noexec already on *path*: a read-only remount must keep them."""
    st = os.statvfs(path)
    kept = 0
    for bit, flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                      (os.ST_NOEXEC, MS_NOEXEC)):
        if st.f_flag & bit:
            kept |= flag
    return kept


def mask(linux: Linux, path: str) -> None:
    """Hide *path*: /dev/null over a file, an empty read-only tmpfs over a directory."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        linux.mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0k,nr_inodes=2")
    else:
        null = os.stat("/dev/null")
        if not stat.S_ISCHR(null.st_mode) or null.st_rdev != os.makedev(1, 3):
            raise ContainerError("/dev/null in the container is not the null device")
        linux.mount("/dev/null", path, None, MS_BIND)


def readonly_root(linux: Linux) -> None:
    linux.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _kept_flags("/"))


_HIERARCHIES: list[str] | None = None


def host_cgroup_hierarchies() -> list[str]:
    """Names of the v1 hierarchies mounted under /sys/fs/cgroup (e.g. 'cpu', 'memory');
    read once per process (hosts do not remount them between containers)."""
    global _HIERARCHIES
    if _HIERARCHIES is None:
        _HIERARCHIES = _read_hierarchies()
    return list(_HIERARCHIES)


def _read_hierarchies() -> list[str]:
    names = []
    root = "/sys/fs/cgroup"
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            sep = fields.index("-")
            parent, _, name = fields[4].rpartition("/")
            if fields[sep + 1] == "cgroup" and parent == root:
                names.append(name)
    return names
