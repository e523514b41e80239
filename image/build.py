"""``vmvc image build``: one rootfs, delivered as an OCI layout and as a VM disk + kernel +
initramfs, cached under a key derived from every input.

Data path: resolve inputs (private apt: versions) → key → cached entry checked and returned,
or: rootfs dir (mmdebstrap | busybox) → guest init → digest → /.vmvc/rootfs.json →
OCI layout + ext4 disk → guest kernel + initramfs → artifacts.json → atomic rename.
"""

from __future__ import annotations

import errno
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from image import cache
from image.debian_archive import PrivateApt, debian_sources
from image.digest import RECORD_DIR, rootfs_digest
from image.errors import ImageError
from image.ext4_disk import disk_size, make_ext4
from image.fs_cleanup import remove_tree
from image.guest_kernel import KERNEL_META_PACKAGE, extract_kernel, kernel_image_package
from image.initramfs import build_initramfs
from image.oci_layout import write_oci_layout
from image.progress import StepProgress
from image.rootfs import (
    WORKLOAD_PACKAGES,
    build_busybox_rootfs,
    build_debian_rootfs,
    extract_static_busybox,
    install_guest_files,
    installed_versions,
)
from paths import image_cache_dir

SUITE = "bookworm"
PROFILES = ("full", "tiny")
FREE_SPACE_MIB = {"full": 1024, "tiny": 64}
INDEX_MAX_AGE = 6 * 3600  # seconds between package-list refreshes, unless --refresh


@dataclass(frozen=True)
class ImageArtifacts:
    """A built image: what ``vmvc image build --json`` prints, and where it lives."""

    entry: Path
    digest: str
    cached: bool

    @property
    def oci_layout(self) -> Path:
        return self.entry / "oci"

    @property
    def disk(self) -> Path:
        return self.entry / "disk.ext4"

    @property
    def kernel(self) -> Path:
        return self.entry / "vmlinuz"

    @property
    def initramfs(self) -> Path:
        return self.entry / "initramfs.img"

    @property
    def manifest(self) -> Path:
        return self.entry / cache.MANIFEST

    def contract(self) -> dict[str, str]:
        return {"digest": self.digest, "oci_layout": str(self.oci_layout),
                "disk": str(self.disk), "kernel": str(self.kernel),
                "initramfs": str(self.initramfs), "manifest": str(self.manifest)}


def builder_sources_hash() -> str:
    """SHA-256 of the image builder's own code and guest files: they shape every artifact."""
    h = hashlib.sha256()
    package = resources.files("image")
    for item in sorted(package.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".py"):
            h.update(item.name.encode() + b"\0" + item.read_bytes())
    for item in sorted(package.joinpath("guest").iterdir(), key=lambda p: p.name):
        h.update(item.name.encode() + b"\0" + item.read_bytes())
    return h.hexdigest()


def resolve_inputs(apt: PrivateApt, profile: str, packages: list[str]) -> dict:
    """Every input of the build, versions included; its hash is the cache key."""
    boot = apt.resolve([KERNEL_META_PACKAGE, "busybox-static"], essential=False)
    kernel = kernel_image_package(boot)
    return {
        "profile": profile,
        "suite": SUITE,
        "sources": [s.line() for s in apt.sources],
        "packages": sorted(packages),
        "versions": apt.resolve(packages, essential=True) if profile == "full" else {},
        "kernel": {"package": kernel, "version": boot[kernel]},
        "busybox_static": boot["busybox-static"],
        "builder": builder_sources_hash(),
        "free_space_mib": FREE_SPACE_MIB[profile],
    }


def build_image(
    profile: str = "full",
    cache_dir: Path | None = None,
    extra_packages: list[str] | None = None,
    mirror: str | None = None,
    refresh: bool = False,
    progress: StepProgress | None = None,
) -> ImageArtifacts:
    """Return the image for these inputs, from the cache when a valid entry exists."""
    if profile not in PROFILES:
        raise ImageError(f"unknown image profile {profile!r} (choose from {', '.join(PROFILES)})")
    progress = progress or StepProgress(quiet=True)
    cache_dir = cache_dir or image_cache_dir()
    cache.ensure_writable(cache_dir)
    base = WORKLOAD_PACKAGES if profile == "full" else ()
    packages = sorted(set(base) | set(extra_packages or ()))
    if profile == "tiny" and packages:
        raise ImageError("the tiny image is busybox only: extra packages need --profile full")
    apt = PrivateApt(cache_dir / "apt", debian_sources(SUITE, mirror), cache_dir / "debs")
    with cache.cache_lock(cache_dir):
        cache.remove_stale_scratch(cache_dir)
        with progress.step("package index"):
            warning = apt.update(0 if refresh else INDEX_MAX_AGE)
            if warning:
                progress.note(warning)
            fresh = refresh or warning is not None
            inputs = resolve_inputs(apt, profile, packages)
        found = _valid_entry(cache_dir, inputs, progress)
        if isinstance(found, ImageArtifacts):
            return found
        if not fresh:  # about to build: resolve against the mirror as it is now
            with progress.step("package index refresh"):
                if warning := apt.update(0):
                    progress.note(warning)
                inputs = resolve_inputs(apt, profile, packages)
            found = _valid_entry(cache_dir, inputs, progress)
            if isinstance(found, ImageArtifacts):
                return found
        return _build_entry(apt, inputs, cache_dir, found.name, found, progress)


def _valid_entry(cache_dir: Path, inputs: dict, progress: StepProgress) -> ImageArtifacts | Path:
    """The usable cached image for *inputs*, else the entry path to build it at."""
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]
    entry = cache_dir / "images" / f"{inputs['profile']}-{key}"
    if entry.exists():
        problem = cache.corruption(entry)
        if problem is None:
            digest = cache.read_manifest(entry)["digest"]
            progress.note(f"image {entry.name}: cached, {digest}")
            return ImageArtifacts(entry, digest, cached=True)
        progress.note(f"image {entry.name}: cache entry unusable ({problem}); rebuilding")
    return entry


def _build_entry(apt: PrivateApt, inputs: dict, cache_dir: Path, name: str, entry: Path,
                 progress: StepProgress) -> ImageArtifacts:
    scratch = cache.scratch_dir(cache_dir, name)
    try:
        manifest = _build_into(apt, inputs, scratch, progress)
        cache.commit(scratch, entry, manifest)
    except OSError as exc:
        remove_tree(scratch)
        if exc.errno == errno.ENOSPC:
            detail = f"no space left on device in {cache_dir}"
        else:
            detail = f"{exc.strerror or exc}: {exc.filename or ''}"
        raise ImageError(f"building image {name}: {detail}") from exc
    except BaseException:
        remove_tree(scratch)
        raise
    return ImageArtifacts(entry, manifest["digest"], cached=False)


def check_versions(resolved: dict[str, str], installed: dict[str, str]) -> None:
    """The image must hold exactly what its cache key says (the full image; tiny has none)."""
    if not resolved:
        return
    differ = sorted(f"{p} {resolved.get(p, '-')}≠{installed.get(p, '-')}"
                    for p in resolved.keys() | installed.keys()
                    if resolved.get(p) != installed.get(p))
    if differ:
        raise ImageError(f"the image holds other packages than resolved ({', '.join(differ[:5])}"
                        f"{', …' if len(differ) > 5 else ''}); the mirror changed meanwhile? "
                        "run the build again")


def _build_into(apt: PrivateApt, inputs: dict, out: Path, progress: StepProgress) -> dict:
    started = time.monotonic()
    profile = inputs["profile"]
    rootfs, work = out / "rootfs", out / "work"
    work.mkdir()
    with progress.step("download busybox-static and the guest kernel"):
        busybox_deb = apt.download("busybox-static", inputs["busybox_static"])
        kernel_deb = apt.download(inputs["kernel"]["package"], inputs["kernel"]["version"])
    with progress.step(f"root filesystem ({profile})"):
        busybox = extract_static_busybox(busybox_deb, work / "busybox")
        if profile == "full":
            build_debian_rootfs(SUITE, apt.sources, inputs["packages"], rootfs, progress)
        else:
            rootfs.mkdir()
            build_busybox_rootfs(busybox, rootfs)
        install_guest_files(rootfs)
    with progress.step("rootfs digest"):
        digest = rootfs_digest(rootfs)
        record = {"digest": digest.digest, "profile": profile, "suite": SUITE}
        (rootfs / RECORD_DIR).mkdir(mode=0o755)
        (rootfs / RECORD_DIR / "rootfs.json").write_text(json.dumps(record, indent=2) + "\n")
    with progress.step("OCI image layout"):
        manifest_digest = write_oci_layout(rootfs, out / "oci", f"vmvc-{profile}", digest.digest,
                                           f"vmvc image build --profile {profile}")
    with progress.step("ext4 disk"):
        size = disk_size(digest.content_bytes, digest.entries, inputs["free_space_mib"] << 20)
        make_ext4(rootfs, out / "disk.ext4", size, digest.digest)
    with progress.step("guest kernel and initramfs"):
        kernel = extract_kernel(kernel_deb, inputs["kernel"]["package"], work / "kernel",
                                out / "vmlinuz")
        build_initramfs(busybox, kernel.modules, out / "initramfs.img", kernel.on_request)
    versions = installed_versions(rootfs)
    check_versions(inputs["versions"], versions)
    remove_tree(rootfs)
    remove_tree(work)
    return {
        "format": 1,
        "digest": digest.digest,
        "rootfs_entries": digest.entries,
        "rootfs_content_bytes": digest.content_bytes,
        "oci_manifest": manifest_digest,
        "disk_size_bytes": size,
        "kernel_version": kernel.version,
        "guest_modules": [m for m, _ in kernel.modules],
        "guest_modules_on_request": [m for m, _ in kernel.on_request],
        "installed_packages": versions,
        "inputs": inputs,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "build_seconds": round(time.monotonic() - started, 1),
    }


def cached_images(cache_dir: Path | None = None) -> list[Path]:
    """Committed entries in the cache, newest first."""
    images = (cache_dir or image_cache_dir()) / "images"
    if not images.is_dir():
        return []
    entries = [p for p in images.iterdir() if (p / cache.MANIFEST).exists()]
    return sorted(entries, key=lambda p: (p / cache.MANIFEST).stat().st_mtime, reverse=True)


def superseded_images(cache_dir: Path | None = None) -> list[Path]:
    """Entries for which a newer entry of the same profile, packages and mirror exists.

    They were built from older package versions or older builder code; nothing picks them
    any more, but a VM or container started from one may still use it, so they are only
    removed on request (``vmvc image prune``).
    """
    newest: dict[tuple[str, tuple[str, ...]], Path] = {}
    superseded = []
    for entry in cached_images(cache_dir):  # newest first
        try:
            inputs = cache.read_manifest(entry)["inputs"]
            lineage = (inputs["profile"], tuple(inputs["packages"]), tuple(inputs["sources"]))
        except (OSError, ValueError, KeyError):
            superseded.append(entry)  # unreadable: useless anyway
            continue
        if lineage in newest:
            superseded.append(entry)
        else:
            newest[lineage] = entry
    return superseded
