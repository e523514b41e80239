"""Is KVM really usable? Decided by booting the guest kernel, not by finding /dev/kvm.

Some hosts expose a /dev/kvm that cannot run a stock kernel (a PVM shim: the guest hangs at
"Probing EDD", or QEMU aborts with "failed to set MSR"), so the only honest test is a boot:
the guest kernel and initramfs with ``-accel kvm -cpu host`` (what the driver uses with
KVM) and ``vmvc.probe`` on the command line, which makes the initramfs print a marker and
power off. The verdict is cached per boot of the host, QEMU binary and kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROBE_MARKER = "VMVC-PROBE-USERSPACE"
QEMU = "qemu-system-x86_64"
OVERRIDE_ENV = "VMVC_ACCEL"


@dataclass(frozen=True)
class KvmVerdict:
    """The accelerator the suite uses and how that was decided."""

    usable: bool
    accelerator: str  # "kvm" or "tcg"
    how: str  # the evidence, in words
    seconds: float = 0.0
    definitive: bool = True  # False after a timeout: a busy host may just have been slow

    @property
    def libvirt_domain_type(self) -> str:
        return "kvm" if self.accelerator == "kvm" else "qemu"


def _unusable(how: str, seconds: float = 0.0) -> KvmVerdict:
    return KvmVerdict(False, "tcg", how, seconds)


def probe_kvm(kernel: Path, initramfs: Path, timeout: float = 20.0) -> KvmVerdict:
    """Boot *kernel* + *initramfs* under KVM and report whether userspace was reached."""
    if not os.path.exists("/dev/kvm"):
        return _unusable("no /dev/kvm on this host")
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return _unusable(f"/dev/kvm cannot be opened: {exc.strerror}")
    qemu = shutil.which(QEMU)
    if qemu is None:
        return _unusable(f"{QEMU} not found, so KVM could not be tried")
    argv = [qemu, "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initramfs),
            "-append", "console=ttyS0 quiet panic=-1 vmvc.probe"]
    start = time.monotonic()
    seen, output, stderr = _boot_until_marker(argv, timeout)
    elapsed = time.monotonic() - start
    if seen:
        return KvmVerdict(True, "kvm", f"booted the guest kernel with -accel kvm -cpu host: "
                                       f"userspace reached in {elapsed:.1f} s", elapsed)
    if stderr:
        return _unusable(f"QEMU with -accel kvm -cpu host failed: {stderr}", elapsed)
    last = output.strip().splitlines()[-1][:80] if output.strip() else "no console output"
    return KvmVerdict(False, "tcg", f"guest under -accel kvm did not reach userspace in "
                      f"{timeout:.0f} s (last console line: {last})", elapsed, definitive=False)


def _boot_until_marker(argv: list[str], timeout: float) -> tuple[bool, str, str]:
    """Run QEMU until the probe marker, its exit or *timeout*; never leave it running."""
    # setpriv: QEMU gets SIGKILL if the caller dies (a hung guest must not run on forever).
    proc = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", *argv],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    output = b""
    errors = b""
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            while sel.get_map() and PROBE_MARKER.encode() not in output:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                for key, _ in sel.select(remaining):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.fileobj is proc.stdout:
                        output += chunk
                    else:
                        errors += chunk
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    err_lines = [ln for ln in errors.decode(errors="replace").splitlines() if ln.strip()]
    telling = [ln for ln in err_lines if "error" in ln] or err_lines[-1:]
    stderr = telling[0].strip() if telling else ""
    return PROBE_MARKER.encode() in output, output.decode(errors="replace"), stderr


def _fingerprint(kernel: Path) -> str:
    """What the verdict depends on: this boot of the host, /dev/kvm, QEMU and the kernel."""
    parts = [Path("/proc/sys/kernel/random/boot_id").read_text().strip()]
    for path in ("/dev/kvm", shutil.which(QEMU) or QEMU):
        try:
            st = os.stat(path)
            parts.append(f"{path}:{st.st_rdev}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{path}:missing")
    with kernel.open("rb") as handle:
        parts.append(hashlib.file_digest(handle, "sha256").hexdigest())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def decide_accelerator(kernel: Path | None, initramfs: Path | None,
                       cache_file: Path | None = None) -> KvmVerdict:
    """The accelerator to use: ``$VMVC_ACCEL`` if set, else the (cached) probe's verdict."""
    forced = os.environ.get(OVERRIDE_ENV, "").strip()
    if forced in ("kvm", "tcg"):
        return KvmVerdict(forced == "kvm", forced, f"forced by {OVERRIDE_ENV}={forced}")
    if kernel is None or initramfs is None:
        if not os.path.exists("/dev/kvm"):
            return _unusable("no /dev/kvm on this host")
        return _unusable("not probed: no guest kernel built yet (vmvc image build); "
                         "/dev/kvm alone proves nothing")
    fingerprint = _fingerprint(kernel)
    if cache_file is not None and cache_file.exists():
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("fingerprint") == fingerprint:
                return KvmVerdict(**cached["verdict"])
        except (ValueError, KeyError, TypeError):
            pass
    verdict = probe_kvm(kernel, initramfs)
    if cache_file is not None and verdict.definitive:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".kvm-probe-")
        with os.fdopen(fd, "w") as handle:
            json.dump({"fingerprint": fingerprint, "verdict": asdict(verdict)}, handle)
        os.rename(tmp, cache_file)
    return verdict

