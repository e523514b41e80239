"""The guest kernel from Debian's cloud kernel package, and the modules the initramfs loads.

The package is unpacked into a scratch directory (``dpkg-deb -x``), never installed on the
host. Debian's cloud kernel has ext4 and the 8250 serial console built in; the virtio
drivers are modules, whose load order comes from ``depmod`` run on the unpacked tree.
"""

from __future__ import annotations

import lzma
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from image.errors import ImageError
from image.external import require_tool, run_tool

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"

GUEST_MODULES = (
    "virtio_pci",  # the PCI transport every virtio device below sits on
    "virtio_blk",  # the root disk
    "virtio_console",  # virtio-serial: the guest agent's channel and the boot marker
    "virtio_net",
    "virtio_balloon",  # memory statistics as the guest sees them
    "vmw_vsock_virtio_transport",
    "button",  # the ACPI power button: a clean shutdown from the host
    "evdev",  # …reaches busybox acpid as an input event
)
ON_REQUEST_MODULES = (
    "overlay",  # a container's root inside the guest (vm-container); not every VM's boot
)
"""In the initramfs too, but loaded only when the kernel command line names them
(``vmvc.load=overlay``): a VM that does not need them boots exactly as before."""


@dataclass(frozen=True)
class GuestKernel:
    version: str  # e.g. 6.1.0-57-cloud-amd64
    vmlinuz: Path
    modules: list[tuple[str, bytes]]  # (file name, uncompressed .ko) in load order
    on_request: list[tuple[str, bytes]] = field(default_factory=list)  # ON_REQUEST_MODULES


def kernel_image_package(resolved: dict[str, str]) -> str:
    """The versioned image package (linux-image-6.1.0-NN-cloud-amd64) among the packages
    that installing the meta package resolves to."""
    images = [name for name in resolved if re.fullmatch(r"linux-image-\d\S*-cloud-amd64", name)]
    if len(images) != 1:
        raise ImageError(f"{KERNEL_META_PACKAGE} resolves to {len(images)} kernel images: "
                        f"{', '.join(images) or 'none'}")
    return images[0]


def module_load_order(modules_dep: str, wanted: tuple[str, ...]) -> list[str]:
    """Paths from a modules.dep text, dependencies first, for the *wanted* module names."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        if ":" not in line:
            continue
        path, rest = line.split(":", 1)
        deps[path] = rest.split()
        by_name[Path(path).name.split(".ko")[0].replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str, trail: tuple[str, ...]) -> None:
        if path in order:
            return
        if path in trail:
            raise ImageError(f"modules.dep has a dependency cycle through {path}")
        for dep in deps.get(path, []):
            visit(dep, (*trail, path))
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise ImageError(f"guest kernel has no module {name}")
        visit(by_name[name], ())
    return order


def _read_module(path: Path) -> bytes:
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    if path.suffix == ".ko":
        return path.read_bytes()
    raise ImageError(f"guest kernel module {path.name}: unsupported compression")


def extract_kernel(deb: Path, package: str, scratch: Path, out_vmlinuz: Path) -> GuestKernel:
    """Unpack *deb* into *scratch*, copy its vmlinuz to *out_vmlinuz*, read the modules."""
    require_tool("dpkg-deb", "dpkg")
    require_tool("depmod", "kmod")
    run_tool(["dpkg-deb", "-x", deb, scratch], f"unpacking {deb.name}", space_check=scratch)
    version = package.removeprefix("linux-image-")
    vmlinuz = scratch / "boot" / f"vmlinuz-{version}"
    moddir = scratch / "lib" / "modules" / version
    if not vmlinuz.is_file() or not moddir.is_dir():
        raise ImageError(f"{deb.name} holds no vmlinuz-{version} and modules")
    run_tool(["depmod", "-b", scratch, version], "depmod of the guest kernel")
    modules_dep = (moddir / "modules.dep").read_text()
    order = module_load_order(modules_dep, GUEST_MODULES)
    shutil.copyfile(vmlinuz, out_vmlinuz)

    def read(paths: list[str]) -> list[tuple[str, bytes]]:
        return [(Path(rel).name.removesuffix(".xz"), _read_module(moddir / rel)) for rel in paths]

    on_request = []
    for name in ON_REQUEST_MODULES:  # one insmod each: its dependencies load at every boot
        (path, *needs) = [p for p in module_load_order(modules_dep, (name,))[::-1]
                          if p not in order]
        if needs:
            raise ImageError(f"guest module {name} needs {', '.join(needs)}: load it at boot")
        on_request.append(path)
    return GuestKernel(version, out_vmlinuz, read(order), read(on_request))
