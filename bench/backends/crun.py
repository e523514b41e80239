"""``crun``: Red Hat's OCI runtime in C, Podman's default; known for its fast start."""

from bench.backends.oci_cli import OciCliBackend


class CrunBackend(OciCliBackend):
    name = "crun"
