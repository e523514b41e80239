"""Bad input to ``vmvc image build``: one line naming the problem, non-zero exit, and no
half-written artifact left in the cache."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paths import image_cache_dir


def vmvc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True,
                          text=True, timeout=600, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("vmvc: ")]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def assert_no_artifacts(cache_dir: Path) -> None:
    images = cache_dir / "images"
    assert not images.exists() or list(images.iterdir()) == []
    scratch = cache_dir / "tmp"
    assert not scratch.exists() or list(scratch.iterdir()) == []


@pytest.fixture
def mounted_tmpfs(tmp_path: Path, as_root: None) -> Iterator[callable]:
    mounts: list[Path] = []

    def mount(size: str, *options: str) -> Path:
        point = tmp_path / f"fs{len(mounts)}"
        point.mkdir()
        opts = ",".join((f"size={size}", *options))
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", point], check=True)
        mounts.append(point)
        return point

    yield mount
    for point in reversed(mounts):
        subprocess.run(["umount", point], check=True)


@pytest.mark.slow
def test_unknown_package(tmp_path: Path) -> None:
    proc = vmvc("image", "build", "--package", "vmvc-no-such-package", "--cache-dir",
                str(tmp_path / "cache"))
    assert_one_line_error(proc, "unknown package", "vmvc-no-such-package")
    assert_no_artifacts(tmp_path / "cache")


@pytest.mark.slow
def test_unreachable_mirror(tmp_path: Path) -> None:
    # A closed port on loopback: nothing leaves the machine.
    proc = vmvc("image", "build", "--profile", "tiny", "--mirror", "http://127.0.0.1:9/debian",
                "--cache-dir", str(tmp_path / "cache"))
    assert_one_line_error(proc, "cannot reach the Debian mirror", "http://127.0.0.1:9/debian")
    assert_no_artifacts(tmp_path / "cache")


def test_unwritable_cache_dir(mounted_tmpfs) -> None:
    read_only = mounted_tmpfs("1m", "ro")
    proc = vmvc("image", "build", "--profile", "tiny", "--cache-dir", str(read_only / "cache"))
    assert_one_line_error(proc, "not writable", str(read_only / "cache"), "Read-only")


def _du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True,
                              check=True).stdout.split()[0])


@pytest.mark.slow
def test_full_disk_during_build(mounted_tmpfs, tiny_image) -> None:
    """The package index and downloads fit; unpacking the kernel and the disk do not."""
    source = image_cache_dir()
    needed = _du(source / "apt") + _du(source / "debs")
    small = mounted_tmpfs(f"{needed // 1024 + 12 * 1024}k")
    cache_dir = small / "cache"
    cache_dir.mkdir()
    shutil.copytree(source / "apt", cache_dir / "apt", symlinks=True)
    shutil.copytree(source / "debs", cache_dir / "debs", symlinks=True)
    proc = vmvc("image", "build", "--profile", "tiny", "--cache-dir", str(cache_dir))
    assert_one_line_error(proc, "no space left on device", str(cache_dir))
    assert_no_artifacts(cache_dir)


def test_unknown_profile_is_refused() -> None:
    proc = vmvc("image", "build", "--profile", "huge")
    assert proc.returncode == 2 and "invalid choice: 'huge'" in proc.stderr
