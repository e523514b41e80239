"""Inside the container's mount namespace: the root filesystem, the spec's mounts, the
default devices, pivot_root, and the read-only and masked paths.

Every path inside the rootfs is resolved by the kernel (openat2 RESOLVE_IN_ROOT, no magic
links) and every mount, node and mask is made through the file descriptor that came back,
never by path again: a symlink in the image can redirect nothing onto the host, and nothing
can be swapped between the check and the use (the CVE-2021-30465 / CVE-2025-31133 class).
"""

from __future__ import annotations

import errno
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
    PROC_SUPER_MAGIC,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    Linux,
)

TYPE_CHECKING = False  # annotations only: collections.abc costs ~3 ms of every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable

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
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
PROC_MOUNTABLE = frozenset(  # runc's list: the files lxcfs emulates
    ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
     "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
     "/proc/sys/kernel/ns_last_pid"))
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


def cleared_flags(options: list[str]) -> int:
    """Flags the options explicitly turn off ("suid", "dev", "exec"…): only those may a
    bind remount drop from its source (runc's ClearedFlags)."""
    cleared = 0
    for option in options:
        on, flag = FLAGS.get(option, (True, 0))
        cleared |= 0 if on else flag
    return cleared


def fd_path(fd: int) -> str:
    """The magic link naming exactly what *fd* is: mounting onto it (or from it) acts on
    that file, wherever an image's symlinks point (runc's and crun's technique)."""
    return f"/proc/self/fd/{fd}"


def _components(path: str) -> list[str]:
    return [p for p in os.path.normpath("/" + path).split("/") if p]


def open_in_root(linux: Linux, root_fd: int, path: str, resolve: int = IN_ROOT,
                 flags: int = os.O_PATH) -> int:
    """*path* opened by the kernel as if *root_fd* were ``/``: symlinks and ``..`` never
    leave it, magic links are refused."""
    return linux.openat2(root_fd, "/".join(_components(path)) or ".", flags, resolve)


def ensure_in_root(linux: Linux, root_fd: int, path: str, directory: bool = True,
                   resolve: int = IN_ROOT) -> int:
    """Like :func:`open_in_root`, first creating what is missing (directories, and the last
    component as a file unless *directory*), each made under a parent opened in the root."""
    parts = _components(path)
    try:
        return open_in_root(linux, root_fd, "/".join(parts), resolve)  # it is there: one call
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _unsafe(path, exc) from exc
    for depth in range(1, len(parts) + 1):
        try:
            fd = open_in_root(linux, root_fd, "/".join(parts[:depth]), resolve)
        except FileNotFoundError:
            _create(linux, root_fd, parts[:depth], directory or depth < len(parts), resolve)
            fd = open_in_root(linux, root_fd, "/".join(parts[:depth]), resolve)
        except OSError as exc:
            raise _unsafe(path, exc) from exc
        if depth == len(parts):
            return fd
        os.close(fd)
    raise AssertionError("unreachable: the root itself always opens")


def _create(linux: Linux, root_fd: int, parts: list[str], directory: bool,
            resolve: int) -> None:
    parent = open_in_root(linux, root_fd, "/".join(parts[:-1]), resolve)
    try:
        if directory:
            os.mkdir(parts[-1], 0o755, dir_fd=parent)
        else:
            os.close(os.open(parts[-1], os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o644, dir_fd=parent))
    except FileExistsError as exc:  # a dangling symlink: where it points does not exist
        raise ContainerError(f"/{'/'.join(parts)} in the rootfs is a symlink to nothing: "
                             "cannot mount or create through it") from exc
    finally:
        os.close(parent)


def _unsafe(path: str, exc: OSError) -> ContainerError:
    reason = {errno.ELOOP: "a symlink (or too many) in the rootfs",
              errno.EXDEV: "a path that leaves the rootfs"}.get(exc.errno, exc.strerror)
    return ContainerError(f"{path}: {reason}")


def check_proc_destination(mount: Mount) -> None:
    """Nothing but proc on /proc, nothing at all inside it but lxcfs's files (runc's rule):
    a mount over /proc/sys/kernel/cap_last_cap or core_pattern is a way to lie to, or
    write through, what the kernel and the runtime read there."""
    destination = os.path.normpath("/" + mount.destination.lstrip("/"))
    if destination == "/proc" and mount.type != "proc":
        raise ContainerError(f"mount /proc: type {mount.type!r}: only proc may be mounted on "
                             "/proc")
    if destination.startswith("/proc/") and destination not in PROC_MOUNTABLE:
        raise ContainerError(f"mount {destination}: cannot be mounted because it is inside "
                             "/proc (only lxcfs's files may be, as runc allows)")


def mount_all(linux: Linux, rootfs: str, mounts: list[Mount]) -> list[Mount]:
    """Mount the spec's mounts under *rootfs*, in order, except the cgroup file systems and
    whatever lies below them: those are returned, to be mounted once the init is in its
    cgroup (namespace), from inside the new root (see :func:`mount_cgroups`)."""
    deferred: list[Mount] = []
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for mount in mounts:
            check_proc_destination(mount)
            if mount.type == "cgroup" or any(_below(mount.destination, d.destination)
                                             for d in deferred):
                if "bind" in mount.options or "rbind" in mount.options:
                    raise ContainerError(f"mount {mount.destination}: bind mounts below a "
                                         "cgroup mount are not supported by vmvc-runtime")
                os.close(ensure_in_root(linux, root_fd, mount.destination))
                deferred.append(mount)
                continue
            _mount_one(linux, root_fd, mount)
    finally:
        os.close(root_fd)
    return deferred


COPY_UP = "tmpcopyup"  # runc's extension (podman --read-only sends it): a tmpfs that
# starts with the contents of the directory it covers


def _copy_file(source: str, target: str) -> None:
    """A regular file's bytes (shutil would cost every start-up ~10 ms of imports)."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while os.sendfile(dst, src, None, 1 << 20):
                pass
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_up(below: int, top: str) -> None:
    """Copy the directory *below* (an fd opened before the tmpfs covered it) into the tmpfs
    at *top*: files, links as links (never followed), modes, owners and times, as runc's
    copy-up keeps them."""
    source = fd_path(below)
    for directory, dirs, files in os.walk(source):
        relative = os.path.relpath(directory, source)
        made = top if relative == "." else os.path.join(top, relative)
        for name in dirs + files:
            path, copy = os.path.join(directory, name), os.path.join(made, name)
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                os.mkdir(copy, stat.S_IMODE(info.st_mode))
            elif stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(path), copy)
            elif stat.S_ISREG(info.st_mode):
                _copy_file(path, copy)
            else:
                continue  # device nodes, sockets, fifos: not copied (runc copies regular
                # files, directories and links)
            os.chown(copy, info.st_uid, info.st_gid, follow_symlinks=False)
            if not stat.S_ISLNK(info.st_mode):
                os.chmod(copy, stat.S_IMODE(info.st_mode))
            os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
        top_info = os.stat(directory)
        os.chmod(made, stat.S_IMODE(top_info.st_mode))
        os.chown(made, top_info.st_uid, top_info.st_gid)


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def mount_cgroups(linux: Linux, root_fd: int, deferred: list[Mount],
                  cgroup_mount: Callable[[int, str, int], None]) -> None:
    """The deferred mounts, inside the new root; *cgroup_mount(root_fd, destination,
    flags)* handles type cgroup."""
    for mount in deferred:
        if mount.type == "cgroup":
            cgroup_mount(root_fd, mount.destination, parse_options(mount.options)[0])
        else:
            _mount_one(linux, root_fd, mount)


def _mount_one(linux: Linux, root_fd: int, mount: Mount) -> None:
    flags, propagation, data = parse_options(mount.options)
    # proc and sysfs only on an ordinary directory (as runc): through a symlink, an image
    # could put them where the later mounts hide them and the masks miss them
    resolve = IN_ROOT | (RESOLVE_NO_SYMLINKS if mount.type in ("proc", "sysfs") else 0)
    if flags & MS_BIND:  # data options (mode=755,size=1k) mean nothing to a bind: ignored,
        source = mount.source  # as runc and the kernel ignore them; but not an id mapping,
        mapped = {"idmap", "ridmap"} & set(data.split(","))  # which changes what it shows
        if mapped:
            raise ContainerError(f"mount {mount.destination}: bind option(s) "
                                 f"{','.join(sorted(mapped))} are not supported by vmvc-runtime")
        if not os.path.exists(source):
            raise ContainerError(f"mount {mount.destination}: source {source} does not exist")
        target = ensure_in_root(linux, root_fd, mount.destination, os.path.isdir(source),
                                resolve)
        try:
            linux.mount(source, fd_path(target), None, flags & (MS_BIND | MS_REC))
        finally:
            os.close(target)
        remount = flags & ~(MS_BIND | MS_REC)
        if remount:  # bind mounts take ro, nosuid… only on a remount, one mount at a time
            _remount_bind(linux, root_fd, mount, remount, flags & MS_REC)
    else:
        copy_up = mount.type == "tmpfs" and COPY_UP in data.split(",")
        if copy_up:
            data = ",".join(d for d in data.split(",") if d != COPY_UP)
        target = ensure_in_root(linux, root_fd, mount.destination, True, resolve)
        below = os.open(fd_path(target), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) \
            if copy_up else -1
        try:
            linux.mount(mount.source, fd_path(target), mount.type, flags, data or None)
            if copy_up:  # the fd opened before the mount still names the directory below
                top = open_in_root(linux, root_fd, mount.destination, resolve)
                try:
                    _copy_up(below, fd_path(top))
                finally:
                    os.close(top)
        finally:
            os.close(target)
            if below >= 0:
                os.close(below)
    if propagation:
        target = open_in_root(linux, root_fd, mount.destination, resolve)
        try:
            linux.mount(None, fd_path(target), None, propagation)
        finally:
            os.close(target)


def _remount_bind(linux: Linux, root_fd: int, mount: Mount, remount: int,
                  recursive: int) -> None:
    """Apply *remount* to the bind just made (and its submounts for rbind), keeping the
    source's nosuid/nodev/noexec unless the options clear them."""
    top = open_in_root(linux, root_fd, mount.destination)  # the new mount, not the one below
    try:
        keep = ~cleared_flags(mount.options)
        linux.mount(None, fd_path(top), None,
                    MS_BIND | MS_REMOUNT | remount | (kept_flags(top) & keep))
        if recursive:
            here = os.readlink(fd_path(top))
            for point in submounts(here)[1:]:
                sub = os.open(point, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    linux.mount(None, fd_path(sub), None,
                                MS_BIND | MS_REMOUNT | remount | (kept_flags(sub) & keep))
                finally:
                    os.close(sub)
    finally:
        os.close(top)


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
    """The default device nodes, the spec's devices, and /dev's usual symlinks, each made
    with *at() calls under a directory opened inside the root."""
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    parents: dict[str, int] = {}  # each directory opened once
    old_umask = os.umask(0)  # nodes get exactly the modes asked for

    def parent_of(path: str) -> int:
        directory = os.path.dirname(path)
        if directory not in parents:
            parents[directory] = ensure_in_root(linux, root_fd, directory)
        return parents[directory]

    try:
        for path, major, minor in DEFAULT_DEVICES:
            _make_node(linux, root_fd, parent_of(path), path, stat.S_IFCHR | 0o666,
                       os.makedev(major, minor), bind_fallback=True)
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        for device in devices:
            _make_node(linux, root_fd, parent_of(device.path), device.path,
                       kind[device.type] | (device.file_mode & 0o7777),
                       os.makedev(device.major, device.minor), owner=(device.uid, device.gid))
        for source, path in DEV_SYMLINKS:
            name = os.path.basename(path)
            if not _exists_at(parent_of(path), name):
                linux.symlink(source, name, parent_of(path))
    finally:
        os.umask(old_umask)
        for fd in parents.values():
            os.close(fd)
        os.close(root_fd)


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _make_node(linux: Linux, root_fd: int, parent: int, path: str, mode: int, device: int,
               *, bind_fallback: bool = False, owner: tuple[int, int] | None = None) -> None:
    name = os.path.basename(path)
    if _exists_at(parent, name):
        os.unlink(name, dir_fd=parent)  # unlinkat: a symlink goes, not what it names
    try:
        linux.mknod(name, mode, device, parent)
    except PermissionError:  # in a user namespace: bind the host's node (as runc does)
        if not bind_fallback:
            raise
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o666,
                         dir_fd=parent))
        node = open_in_root(linux, root_fd, path, IN_ROOT | RESOLVE_NO_SYMLINKS)
        try:
            linux.mount(path, fd_path(node), None, MS_BIND)
        finally:
            os.close(node)
    if owner is not None:
        os.chown(name, *owner, dir_fd=parent, follow_symlinks=False)


def pivot_into(linux: Linux, rootfs: str) -> None:
    """pivot_root(".", ".") from inside *rootfs*, then detach the old root (runc, crun)."""
    linux.chdir(rootfs)
    linux.pivot_root(".", ".")
    linux.mount(None, ".", None, MS_SLAVE | MS_REC)  # unmounts must not reach the host
    linux.umount2(".", MNT_DETACH)
    linux.chdir("/")


def check_proc(linux: Linux, root_fd: int, mounts: list[Mount]) -> bool:
    """After pivot_root: is /proc the procfs the spec mounted there? Masks, read-only paths
    and every later fd-based mount rely on it; an image that moved it (through a symlink
    into a place a later mount hides) must fail here, not get an unmasked procfs."""
    wanted = any(m.type == "proc" and _components(m.destination) == ["proc"] for m in mounts)
    try:
        fd = linux.openat2(root_fd, "proc", os.O_PATH | os.O_DIRECTORY,
                           RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)
    except OSError:
        fd = -1
    try:
        is_proc = fd >= 0 and linux.fstatfs_type(fd) == PROC_SUPER_MAGIC
    finally:
        if fd >= 0:
            os.close(fd)
    if wanted and not is_proc:
        raise ContainerError("/proc in the container is not the procfs mounted for it "
                             "(moved by a symlink in the image?)")
    return is_proc


def _open_present(linux: Linux, root_fd: int, path: str, field: str) -> int | None:
    """*path* opened in the root, None if absent (nothing to protect there); present but
    not reachable safely: an error naming *field*, never skipped."""
    try:
        return open_in_root(linux, root_fd, path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unsafe(f"{field} {path}", exc) from exc


def make_readonly(linux: Linux, root_fd: int, path: str) -> None:
    """Bind *path* onto itself read-only (and its submounts)."""
    fd = _open_present(linux, root_fd, path, "linux.readonlyPaths")
    if fd is None:
        return
    try:
        linux.mount(fd_path(fd), fd_path(fd), None, MS_BIND | MS_REC)
    finally:
        os.close(fd)
    top = open_in_root(linux, root_fd, path)
    try:
        linux.mount(None, fd_path(top), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC
                    | kept_flags(top))
    finally:
        os.close(top)


def kept_flags(fd: int) -> int:
    """nosuid/nodev/noexec already on the mount *fd* is on: a remount must keep them."""
    st = os.fstatvfs(fd)
    kept = 0
    for bit, flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                      (os.ST_NOEXEC, MS_NOEXEC)):
        if st.f_flag & bit:
            kept |= flag
    return kept


def mask_all(linux: Linux, root_fd: int, paths: list[str]) -> None:
    """Hide each path: /dev/null over a file, an empty read-only tmpfs over a directory."""
    null = -1
    try:
        for path in paths:
            fd = _open_present(linux, root_fd, path, "linux.maskedPaths")
            if fd is None:
                continue
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    linux.mount("tmpfs", fd_path(fd), "tmpfs", MS_RDONLY, "size=0k,nr_inodes=2")
                    continue
                if null < 0:
                    null = _null_device(linux, root_fd)
                linux.mount(fd_path(null), fd_path(fd), None, MS_BIND)
            finally:
                os.close(fd)
    finally:
        if null >= 0:
            os.close(null)


def _null_device(linux: Linux, root_fd: int) -> int:
    """The container's /dev/null, opened without following a symlink, checked to be the
    null device: a mask made from anything else would expose what it should hide."""
    try:
        fd = open_in_root(linux, root_fd, "/dev/null", IN_ROOT | RESOLVE_NO_SYMLINKS)
    except OSError as exc:
        raise ContainerError(f"/dev/null in the container: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise ContainerError("/dev/null in the container is not the null device")
    return fd


def readonly_root(linux: Linux, root_fd: int) -> None:
    linux.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags(root_fd))


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
