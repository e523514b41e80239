"""Where vmvc keeps its caches, state and work dirs, each with its environment override.

A top-level module that imports nothing of the suite: image/, vmdriver/ and bench/ all need
these places, and none may import another upward (bench uses image and vmdriver, never the
reverse), so their one home sits below all three. runtime/ is the exception on purpose: its
start-up is measured, so it imports nothing new and keeps runc-like defaults of its own
(/run/vmvc-runtime, $VMVC_RUNTIME_DATA or /var/lib/vmvc-runtime); the harness uses the same
dirs (``RUNTIME_ROOT``, ``RUNTIME_DATA``, so ``vmvc-runtime list`` sees its containers and
every backend shares one unpacked copy of the image's layers) and hands them to it.
"""

from __future__ import annotations

import os
from pathlib import Path

BENCH_WORKDIR = Path(os.environ.get("VMVC_BENCH_DIR", "/var/lib/vmvc/bench"))
"""The harness's scratch space: bundles, overlay upper dirs, bare instances' dirs."""
BENCH_STATE_DIR = Path("/run/vmvc-bench")
"""State of the runtimes the harness drives by their CLI: one ``--root`` per backend."""
VM_WORKDIR = Path(os.environ.get("VMVC_VM_DIR", "/var/lib/vmvc/vms"))
"""One dir per VM: its disk overlay, sockets and serial log (vmdriver)."""
RUNTIME_ROOT = Path("/run/vmvc-runtime")
"""The built-in runtime's state root, as the harness uses it (runtime's own default)."""
RUNTIME_DATA = Path(os.environ.get("VMVC_RUNTIME_DATA", "/var/lib/vmvc-runtime"))
"""The built-in runtime's data dir (unpacked image layers), as the harness uses it."""


def image_cache_dir() -> Path:
    """The image cache: ``$VMVC_CACHE_DIR``, else ``$XDG_CACHE_HOME/vmvc``, else
    ``~/.cache/vmvc``. Read at each call: a test or a command may point it elsewhere."""
    if os.environ.get("VMVC_CACHE_DIR"):
        return Path(os.environ["VMVC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vmvc"


def image_scratch_dir(cache_dir: Path) -> Path:
    """Where builds happen before their rename into the cache: on the cache's file system."""
    return cache_dir / "tmp"


def kvm_probe_file(cache_dir: Path | None = None) -> Path:
    """The KVM probe's cached verdict. Beside the images: it is a verdict on their guest
    kernel (and this host's boot, /dev/kvm and QEMU)."""
    return (cache_dir or image_cache_dir()) / "kvm-probe.json"
