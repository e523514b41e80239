"""Backends: the ways the harness runs the image (one interface, bench.backends.base)."""

from __future__ import annotations

from bench.backends.bare import BareBackend
from bench.backends.bare_veth import BareVethBackend
from bench.backends.base import Backend, BackendContext, Instance, Limits
from bench.backends.builtin import BuiltinBackend
from bench.backends.builtin_cli import BuiltinCliBackend
from bench.backends.crun import CrunBackend
from bench.backends.docker import DockerBackend
from bench.backends.gvisor import GvisorBackend
from bench.backends.lxc import LxcBackend
from bench.backends.podman import PodmanBackend
from bench.backends.runc import RuncBackend
from bench.backends.vm import VmBackend
from bench.backends.vm_container import VmContainerBackend

BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls for cls in (BareBackend, BareVethBackend, BuiltinBackend, BuiltinCliBackend,
                              RuncBackend, CrunBackend, DockerBackend, PodmanBackend,
                              GvisorBackend, LxcBackend, VmBackend, VmContainerBackend)
}

__all__ = ["BACKENDS", "Backend", "BackendContext", "Instance", "Limits", "make_backend"]


def make_backend(name: str, context: BackendContext) -> Backend:
    return BACKENDS[name](context)
