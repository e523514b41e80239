"""Running the external tools the suite builds on (mmdebstrap, apt, mkfs.ext4, tar, QEMU).

One place turns a failed tool into a one-line :class:`ImageError` that names the step and
quotes the tool's own last words, so every caller reports failures the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from image.errors import ImageError

DIE_WITH_VMVC = ("setpriv", "--pdeathsig", "TERM", "--")
"""Prefix for every tool: SIGTERM when vmvc dies, even by SIGKILL. A killed build must not
leave mmdebstrap writing into a scratch dir the next build removes (on SIGTERM it stops).
The harness prefixes its pyperf workers with it too: one definition, here at the bottom."""


def require_tool(name: str, package: str) -> str:
    """Return the path of *name* or fail with the Debian package that provides it."""
    path = shutil.which(name)
    if path is None:
        raise ImageError(f"{name} not found: install the Debian package {package} (make setup)")
    return path


def last_error_line(text: str) -> str:
    """The most telling line of a tool's stderr: its last error line, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("E:", "ERROR", "error", "Error")) or "No space left" in line:
            return line
    return lines[-1] if lines else "no output"


def run_tool(
    argv: Sequence[str | os.PathLike[str]],
    step: str,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    space_check: Path | None = None,
    timeout: float | None = None,
) -> str:
    """Run *argv*, return its stdout; on failure raise one line naming *step*.

    *space_check* names the directory whose file system is examined when the tool fails:
    tools report a full disk in many ways, the suite reports it in one.
    """
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(
            [*DIE_WITH_VMVC, *(os.fspath(a) for a in argv)],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ImageError(f"{step}: {argv[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{step}: {argv[0]} timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise _failure(step, proc.stderr or proc.stdout, space_check)
    return proc.stdout


def _failure(step: str, output: str, space_check: Path | None) -> ImageError:
    """One line: the step and the tool's telling line, or a full disk said plainly."""
    detail = last_error_line(output)
    if space_check is not None and (is_full(space_check) or "No space left" in output):
        detail = f"no space left on device in {space_check}"
    return ImageError(f"{step} failed: {detail}")


def is_full(directory: Path, reserve: int = 4 << 20) -> bool:
    """True when the file system holding *directory* has less than *reserve* bytes free."""
    try:
        return shutil.disk_usage(directory).free < reserve
    except OSError:
        return False


def run_streaming(
    argv: Sequence[str | os.PathLike[str]],
    step: str,
    on_line: Callable[[str], None],
    *,
    space_check: Path | None = None,
) -> None:
    """Run *argv*, handing each stderr/stdout line to *on_line* (progress) as it comes."""
    try:
        proc = subprocess.Popen(
            [*DIE_WITH_VMVC, *(os.fspath(a) for a in argv)], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        )
    except FileNotFoundError as exc:
        raise ImageError(f"{step}: {argv[0]} not found") from exc
    tail: deque[str] = deque(maxlen=40)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            tail.append(line)
            on_line(line.rstrip())
    except BaseException:
        # SIGTERM first: mmdebstrap unmounts what it mounted into the chroot on its way out.
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    returncode = proc.wait()
    if returncode != 0:
        raise _failure(step, "".join(tail), space_check)
