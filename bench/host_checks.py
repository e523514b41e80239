"""What this host can run, and why not: the checks behind ``vmvc doctor``.

Each check tries the real thing where it can (a namespace, an overlay mount, a seccomp
filter, a KVM boot, a libvirt connection) and says which backends need it, so the doctor
fails only for what the requested backends use. Every failure carries a one-line fix.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import kernel_features
from image.build import cached_images, superseded_images
from image.cache import read_manifest
from paths import image_cache_dir, kvm_probe_file
from results import BACKEND_ORDER
from vmdriver.accel import KvmVerdict, decide_accelerator

BACKENDS = BACKEND_ORDER
CONTAINERS = ("builtin", "builtin-cli", "runc", "crun")
VMS = ("vm", "vm-container")  # each boots the image through libvirt
DEFAULT_URI = "qemu:///system"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    needed_by: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix,
                "needed_by": list(self.needed_by)}


def _version_line(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def check_root() -> Check:
    ok = os.geteuid() == 0
    return Check("root", ok, "running as root" if ok else f"running as uid {os.geteuid()}",
                 "run as root (sudo vmvc …)", (*CONTAINERS, *VMS))


def check_namespaces() -> list[Check]:
    checks = []
    for kind in kernel_features.NAMESPACE_FLAGS:
        error = kernel_features.try_namespace(kind)
        needed = () if kind == "user" else CONTAINERS
        fix = ("enable user namespaces: sysctl -w user.max_user_namespaces=15000"
               if kind == "user" else f"use a kernel with CONFIG_{kind.upper()}_NS and run as root")
        checks.append(Check(f"namespace {kind}", error is None,
                            "unshare works" if error is None else error, fix, needed))
    return checks


def check_cgroups(layout: kernel_features.CgroupLayout) -> Check:
    parts = []
    if layout.v1_controllers:
        parts.append(f"v1: {' '.join(layout.v1_controllers)}")
    if layout.v2_mount:
        controllers = " ".join(layout.v2_controllers) or "no controllers"
        parts.append(f"cgroup2 at {layout.v2_mount}: {controllers}")
    missing = layout.missing()
    detail = f"{layout.kind} ({'; '.join(parts)})"
    if missing:
        detail += f"; missing {', '.join(missing)}"
    return Check("cgroups", not missing, detail,
                 f"enable the {', '.join(missing)} controller(s) (kernel config or boot options)",
                 CONTAINERS)


def check_overlayfs() -> Check:
    error = kernel_features.try_overlayfs()
    return Check("overlayfs", error is None, error or "mount and copy-up work",
                 "load the overlay module: modprobe overlay", ("builtin", "builtin-cli"))


def check_seccomp() -> Check:
    error = kernel_features.try_seccomp()
    if error is not None:
        return Check("seccomp", False, error, "use a kernel with CONFIG_SECCOMP_FILTER", CONTAINERS)
    import ctypes.util

    lib = ctypes.util.find_library("seccomp")
    return Check("seccomp", lib is not None,
                 f"filter mode works; libseccomp: {lib or 'missing'}",
                 "apt-get install libseccomp2 (make setup)", CONTAINERS)


def check_kvm(verdict: KvmVerdict) -> Check:
    detail = ("usable: " if verdict.usable else "not usable, VMs run under TCG (emulated): ")
    return Check("kvm", verdict.usable, detail + verdict.how,
                 "VM figures here are emulated; for KVM figures use a host with VT-x/AMD-V "
                 "and a working /dev/kvm (CI: the kvm udev rule)", ())


def libvirtd_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "libvirtd":
                    return int(entry.name)
            except OSError:
                continue
    return None


def check_libvirtd_kvm_view(verdict: KvmVerdict) -> Check | None:
    """With a broken KVM, libvirtd must not see /dev/kvm (each start re-probes: ~45 s)."""
    pid = libvirtd_pid()
    if pid is None or verdict.usable or not os.path.exists("/dev/kvm"):
        return None
    try:
        hidden = stat.S_ISREG(os.stat(f"/proc/{pid}/root/dev/kvm").st_mode)
    except OSError:
        hidden = False
    return Check("libvirtd /dev/kvm hidden", hidden,
                 f"libvirtd (pid {pid}) sees /dev/kvm as a read-only empty file" if hidden else
                 "libvirtd sees a /dev/kvm it can open: every domain start re-probes QEMU (~40 s)",
                 "make setup (restarts libvirtd in a mount namespace with /dev/kvm hidden)",
                 VMS)


def check_libvirt(verdict: KvmVerdict, uri: str) -> Check:
    try:
        import libvirt
    except ImportError:
        return Check("libvirt", False, "libvirt-python not installed", "make setup", VMS)
    fix = "make setup (starts virtlogd and libvirtd)"
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        return Check("libvirt", False, f"{uri}: {exc.get_error_message()}", fix, VMS)
    try:
        major, rest = divmod(conn.getLibVersion(), 1_000_000)
        minor, micro = divmod(rest, 1000)
        domain_type = verdict.libvirt_domain_type
        try:
            conn.getDomainCapabilities(None, "x86_64", None, domain_type, 0)
        except libvirt.libvirtError as exc:
            return Check("libvirt", False, f"{uri}: domain type {domain_type} unavailable: "
                         f"{exc.get_error_message()}", fix, VMS)
    finally:
        conn.close()
    label = "kvm" if domain_type == "kvm" else "qemu (TCG, emulated)"
    ok = os.path.exists("/run/libvirt/virtlogd-sock") or not uri.endswith("/system")
    detail = f"{uri}: libvirt {major}.{minor}.{micro}, domain type {label}"
    if not ok:
        detail += "; virtlogd not running (domain start would fail)"
    return Check("libvirt", ok, detail, fix, VMS)


def check_qemu() -> Check:
    line = _version_line(["qemu-system-x86_64", "--version"])
    img = shutil.which("qemu-img")
    ok = line is not None and img is not None
    detail = line or "qemu-system-x86_64 not found"
    if line and not img:
        detail += "; qemu-img not found"
    return Check("qemu", ok, detail, "apt-get install qemu-system-x86 qemu-utils (make setup)",
                 VMS)


def check_peer(name: str, layout: kernel_features.CgroupLayout) -> Check:
    line = _version_line([name, "--version"])
    needed = (name,) if name in BACKENDS else ()
    if line is None:
        return Check(name, False, "not installed", f"apt-get install {name} (make setup)", needed)
    if name == "crun" and layout.kind == "hybrid" and layout.v2_controllers:
        return Check(name, False, f"{line}; refuses hybrid cgroups with controllers in cgroup2 "
                     f"({' '.join(layout.v2_controllers)})",
                     "make setup (mounts hugetlb as a v1 hierarchy, leaving cgroup2 empty)", needed)
    return Check(name, True, line, "", needed)


def check_docker() -> Check:
    """Docker Engine answering, with vmvc-runtime registered (the docker backend)."""
    from bench.backends.docker import DockerBackend

    line = _version_line([DockerBackend.binary, "--version"])
    if line is None:
        return Check("docker", False, "not installed", "apt-get install docker.io (make setup)",
                     ("docker",))
    info = subprocess.run([DockerBackend.binary, "info", "--format",
                           "{{.ServerVersion}} {{json .Runtimes}}"], capture_output=True,
                          text=True, timeout=60, check=False)
    if info.returncode != 0:
        return Check("docker", False, f"{line}; dockerd does not answer",
                     "make setup (starts dockerd)", ("docker",))
    version, _, runtimes = info.stdout.strip().partition(" ")
    registered = '"vmvc"' in runtimes
    return Check("docker", True, f"dockerd {version}; vmvc-runtime "
                 f"{'registered as runtime vmvc' if registered else 'not registered'}",
                 "", ("docker",))


def check_gvisor() -> Check:
    """runsc, which make setup builds from Debian's gVisor source (the gvisor backend)."""
    from bench.backends.gvisor import RUNSC

    line = _version_line([RUNSC, "--version"])
    if line is None:
        return Check("gvisor", False, f"runsc not built ({RUNSC})",
                     "make setup (scripts/build_gvisor.sh builds it)", ("gvisor",))
    return Check("gvisor", True, line, "", ("gvisor",))


def check_image_cache(cache_dir: Path) -> Check:
    entries = cached_images(cache_dir)
    fix = "vmvc image build (make setup builds it)"
    if not entries:
        return Check("image cache", False, f"no image built in {cache_dir}", fix,
                     (*CONTAINERS, *VMS))
    manifest = read_manifest(entries[0])
    names = ", ".join(e.name.split("-")[0] for e in entries)
    detail = (f"{len(entries)} image(s) in {cache_dir} ({names}); newest {entries[0].name}: "
              f"{manifest['digest'][:19]}…, kernel {manifest['kernel_version']}")
    superseded = superseded_images(cache_dir)
    if superseded:
        detail += f"; {len(superseded)} superseded (vmvc image prune removes them)"
    return Check("image cache", True, detail, fix, (*CONTAINERS, *VMS))


def newest_kernel(cache_dir: Path) -> tuple[Path | None, Path | None]:
    entries = cached_images(cache_dir)
    if not entries:
        return None, None
    return entries[0] / "vmlinuz", entries[0] / "initramfs.img"


def run_checks(cache_dir: Path | None = None, uri: str = DEFAULT_URI,
               on_check: Callable[[Check], None] | None = None) -> tuple[KvmVerdict, list[Check]]:
    """Every check, in the order the doctor shows them; the accelerator verdict too."""
    cache_dir = cache_dir or image_cache_dir()
    layout = kernel_features.cgroup_layout()
    kernel, initramfs = newest_kernel(cache_dir)
    verdict = decide_accelerator(kernel, initramfs, kvm_probe_file(cache_dir))
    steps: list[Callable[[], Check | list[Check] | None]] = [
        check_root, check_namespaces, lambda: check_cgroups(layout), check_overlayfs,
        check_seccomp, lambda: check_kvm(verdict), lambda: check_libvirt(verdict, uri),
        lambda: check_libvirtd_kvm_view(verdict), check_qemu,
        *(lambda n=name: check_peer(n, layout) for name in ("runc", "crun", "podman")),
        check_docker, check_gvisor,
        lambda: check_image_cache(cache_dir),
    ]
    checks: list[Check] = []
    for step in steps:
        result = step()
        for check in result if isinstance(result, list) else [result] if result else []:
            checks.append(check)
            if on_check:
                on_check(check)
    return verdict, checks


def failures_for(checks: list[Check], backends: list[str]) -> list[Check]:
    """The failed checks that one of *backends* needs."""
    return [c for c in checks if not c.ok and set(c.needed_by) & set(backends)]


def parse_backends(text: str) -> list[str]:
    names = [b for b in re.split(r"[,\s]+", text.strip()) if b]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        from bench.errors import VmvcError

        raise VmvcError(f"unknown backend {', '.join(unknown)} (choose from {', '.join(BACKENDS)})")
    return names


if __name__ == "__main__":  # python -m bench.host_checks accelerator (used by make setup)
    import sys

    if sys.argv[1:] != ["accelerator"]:
        sys.exit("usage: python -m bench.host_checks accelerator")
    cache = image_cache_dir()
    print(decide_accelerator(*newest_kernel(cache), kvm_probe_file(cache)).accelerator)
