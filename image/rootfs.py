"""The root filesystem itself, as a plain directory: Debian's packages through mmdebstrap
(the full image), or static busybox alone (the tiny image for fast tests). The suite's guest
init is added to both, and what each medium makes for itself (/dev) is left empty."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from image.debian_archive import AptSource
from image.errors import ImageError
from image.external import require_tool, run_streaming, run_tool
from image.fs_cleanup import remove_tree
from image.initramfs import guest_source
from image.progress import StepProgress

WORKLOAD_PACKAGES = (
    "busybox", "sysbench", "fio", "stress-ng", "iperf3", "redis-server", "redis-tools",
    "sockperf", "nginx-light", "wrk",  # services: server in the instance, client on the host
    "mariadb-server-core",  # db (full suite): the server; sysbench is its client
    "qemu-guest-agent",
    "crun",  # vm-container: the runtime of the containers inside the guest
)
GUEST_INIT = "usr/local/sbin/vmvc-init"
POWER_OFF = ("#!/bin/sh\n# vmvc: ask the guest init (PID 1) to power the VM off\n"
             "exec /bin/busybox kill -USR2 1\n")
GUEST_POWER_OFF = (
    "usr/local/share/vmvc/acpi/PWRF/00000080",  # busybox acpid: the ACPI power button
    "usr/sbin/shutdown",  # qemu-ga's guest-shutdown runs /sbin/shutdown (merged /usr)
)
HOSTNAME = "vmvc"


def build_debian_rootfs(suite: str, sources: list[AptSource], packages: list[str], out: Path,
                        progress: StepProgress) -> None:
    """mmdebstrap's essential variant plus *packages*, into the directory *out*.

    mmdebstrap mounts /proc, /sys and /dev into the chroot; run in a private mount
    namespace, those mounts vanish with it, even if it is killed before it unmounts.
    """
    require_tool("mmdebstrap", "mmdebstrap")
    require_tool("unshare", "util-linux")
    mode = "root" if os.geteuid() == 0 else "unshare"

    def show(line: str) -> None:
        if line.startswith(("I:", "E:", "W:")):
            progress.detail(line)

    # mmdebstrap leaves its gpg home (mmdebstrap.gpghome.*) in $TMPDIR after every run:
    # give it a TMPDIR of its own in the build's scratch dir, removed here (or, after a
    # kill, with the scratch dir by the next build). It unsets TMPDIR inside the chroot.
    with tempfile.TemporaryDirectory(prefix="mmdebstrap-tmp.", dir=out.parent) as tmp:
        argv = ["env", f"TMPDIR={tmp}", "unshare", "--mount", "--propagation", "private", "--",
                "mmdebstrap", f"--mode={mode}", "--variant=essential", "--format=directory",
                f"--include={','.join(packages)}", suite, out, *(s.line() for s in sources)]
        run_streaming(argv, "mmdebstrap", show, space_check=out.parent)


def extract_static_busybox(busybox_deb: Path, scratch: Path) -> bytes:
    """The static busybox binary from Debian's busybox-static package."""
    run_tool(["dpkg-deb", "-x", busybox_deb, scratch], "unpacking busybox-static",
             space_check=scratch)
    return (scratch / "bin" / "busybox").read_bytes()


def build_busybox_rootfs(binary: bytes, out: Path) -> None:
    """A rootfs of static busybox, its applet links and a minimal /etc."""
    for directory, mode in (("bin", 0o755), ("sbin", 0o755), ("usr/bin", 0o755),
                            ("usr/sbin", 0o755), ("usr/local/sbin", 0o755), ("etc", 0o755),
                            ("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("run", 0o755),
                            ("root", 0o700), ("tmp", 0o1777), ("var/tmp", 0o1777)):
        (out / directory).mkdir(parents=True, exist_ok=True)
        os.chmod(out / directory, mode)
    (out / "bin/busybox").write_bytes(binary)
    os.chmod(out / "bin/busybox", 0o755)
    applets = run_tool([out / "bin/busybox", "--list-full"], "listing busybox applets").split()
    for applet in applets:
        link = out / applet
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(out / "bin/busybox", link.parent))
    (out / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (out / "etc/group").write_text("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")


def install_guest_files(rootfs: Path) -> None:
    """Add the guest init; drop what each medium makes itself and what the host leaked in."""
    init = rootfs / GUEST_INIT
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_bytes(guest_source("vmvc-init.sh"))
    os.chmod(init, 0o755)
    for rel in GUEST_POWER_OFF:
        script = rootfs / rel
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(POWER_OFF)
        os.chmod(script, 0o755)
    (rootfs / "etc/hostname").write_text(HOSTNAME + "\n")
    resolv = rootfs / "etc/resolv.conf"
    if resolv.exists() or resolv.is_symlink():
        resolv.unlink()
    for node in (rootfs / "dev").iterdir():
        remove_tree(node)


def installed_versions(rootfs: Path) -> dict[str, str]:
    """Package → version from the rootfs's dpkg status (empty for the busybox rootfs)."""
    status = rootfs / "var/lib/dpkg/status"
    if not status.exists():
        return {}
    versions = {}
    for stanza in status.read_text().split("\n\n"):
        name = re.search(r"^Package: (\S+)", stanza, re.M)
        version = re.search(r"^Version: (\S+)", stanza, re.M)
        if name and version and "install ok installed" in stanza:
            versions[name.group(1)] = version.group(1)
    if not versions:
        raise ImageError(f"{status} lists no installed package")
    return versions
