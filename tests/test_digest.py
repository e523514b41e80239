"""The rootfs digest covers paths, modes, owners and contents, and nothing medium-specific."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from image.digest import digest_lines, rootfs_digest


@pytest.fixture
def tree(tmp_path: Path, as_root: None) -> Path:
    """A small tree owned by root (the expected lines say uid 0, gid 0)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("vmvc\n")
    (root / "bin").mkdir()
    (root / "bin/sh").write_text("#!shell")
    os.chmod(root / "bin/sh", 0o4755)
    (root / "usr").symlink_to("bin")
    (root / "dev").mkdir()
    for directory in ("etc", "bin", "dev"):
        os.chmod(root / directory, 0o755)
    os.chmod(root / "etc/hostname", 0o644)
    return root


def test_lines_follow_the_documented_format(tree: Path) -> None:
    lines = [line for line, _ in digest_lines(tree)]
    shell = hashlib.sha256(b"#!shell").hexdigest()
    hostname = hashlib.sha256(b"vmvc\n").hexdigest()
    assert lines == [
        b"d 0755 0 0 - /bin\n",
        f"f 4755 0 0 {shell} /bin/sh\n".encode(),
        b"d 0755 0 0 - /dev\n",
        b"d 0755 0 0 - /etc\n",
        f"f 0644 0 0 {hostname} /etc/hostname\n".encode(),
        b"l 0777 0 0 bin /usr\n",
    ]
    expected = hashlib.sha256(b"".join(lines)).hexdigest()
    assert rootfs_digest(tree).digest == f"sha256:{expected}"


def test_timestamps_do_not_count_but_modes_owners_and_content_do(tree: Path) -> None:
    base = rootfs_digest(tree).digest
    os.utime(tree / "etc/hostname", (1, 1))
    assert rootfs_digest(tree).digest == base
    os.chmod(tree / "etc/hostname", 0o600)
    assert rootfs_digest(tree).digest != base
    os.chmod(tree / "etc/hostname", 0o644)
    os.chown(tree / "etc/hostname", 1, 1)
    assert rootfs_digest(tree).digest != base
    os.chown(tree / "etc/hostname", 0, 0)
    (tree / "etc/hostname").write_text("other\n")
    assert rootfs_digest(tree).digest != base


def test_medium_specific_entries_are_left_out(tree: Path) -> None:
    base = rootfs_digest(tree)
    (tree / "lost+found").mkdir()
    (tree / ".vmvc").mkdir()
    (tree / ".vmvc/rootfs.json").write_text("{}")
    (tree / "dev/null").write_text("a file where a device node would be")
    os.mkfifo(tree / "etc/fifo")
    after = rootfs_digest(tree)
    assert after.digest == base.digest
    assert after.entries == base.entries == 6
    assert after.content_bytes == len("#!shell") + len("vmvc\n")


def test_missing_tree_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        rootfs_digest(tmp_path / "absent")
