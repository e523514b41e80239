"""Modes of the runtime's stores on disk (the data dir: ``layers/``, ``containers/``,
``seccomp/``) and of the harness's work dirs, which use :func:`private_dir` too.

They hold what images and containers put there: setuid binaries, device nodes, files of
image uids that are real users on the host. A host user who could reach a container's upper
dir would run the setuid shell the container left in it, so no store is open to host users:
0700, or 0711 where a non-root id must pass. That id is a user-namespaced container's root,
which mounts its overlay itself: the data dir and ``containers/`` are 0711, each container's
dir belongs to its root (0700). The layers are shared by every container, so ``layers/``
stays 0700 and an ACL entry lets each such root pass (``--x``): 0711 there would let anyone
who knows a layer's digest run the image's setuid files.

Modes are set on every use, not only by mkdir: makedirs' mode is masked by the umask and
ignored for a dir that exists, and installations made before this have 0755 dirs.
(Only ``os`` here: this is on ``vmvc-runtime create``'s path.)
"""

from __future__ import annotations

import os

from runtime.errors import ContainerError

PRIVATE = 0o700
PASSAGE = 0o711  # traversable, not listable: for dirs whose entries are private themselves
_ACL = "system.posix_acl_access"
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


def private_dir(path: str | os.PathLike[str], mode: int = PRIVATE) -> str:
    """*path* made (with its parents) and given *mode* now, whatever it had."""
    path = os.fspath(path)
    os.makedirs(path, mode, exist_ok=True)
    os.chmod(path, mode)
    return path


def layer_store(path: str | os.PathLike[str], passer: int | None = None) -> str:
    """The layer store, 0700; *passer* (a host uid) may pass through it from now on.

    Passers granted before are kept (containers of theirs may be mounting right now); a
    plain chmod would disable them (it rewrites the ACL's mask), so the ACL is rewritten
    whole, which also sets the mode."""
    path = os.fspath(path)
    os.makedirs(path, PRIVATE, exist_ok=True)
    passers = _acl_passers(path)
    if passer is not None and passer not in passers:
        passers.append(passer)
    if not passers:
        os.chmod(path, PRIVATE)
        return path
    try:
        os.setxattr(path, _ACL, _acl(passers))
    except OSError as exc:
        raise ContainerError(f"{path}: cannot let uid {passer} reach the image layers "
                             f"(a POSIX ACL: {exc.strerror}); a user-namespaced container "
                             "with an image needs a file system with ACLs here") from exc
    return path


def _acl(passers: list[int]) -> bytes:
    """The xattr form of ``u::rwx, u:ID:--x…, g::---, m::--x, o::---``."""
    entries = [(_USER_OBJ, 7, _NO_ID), *((_USER, 1, uid) for uid in sorted(passers)),
               (_GROUP_OBJ, 0, _NO_ID), (_MASK, 1, _NO_ID), (_OTHER, 0, _NO_ID)]
    data = _ACL_VERSION.to_bytes(4, "little")
    for tag, perm, ident in entries:
        data += tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + \
            ident.to_bytes(4, "little")
    return data


def _acl_passers(path: str) -> list[int]:
    try:
        data = os.getxattr(path, _ACL)
    except OSError:  # no ACL (ENODATA), or none possible here
        return []
    return [int.from_bytes(data[i + 4:i + 8], "little") for i in range(4, len(data) - 7, 8)
            if int.from_bytes(data[i:i + 2], "little") == _USER]
