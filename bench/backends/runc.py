"""``runc``: the reference OCI runtime (Go), the one Docker and containerd use by default."""

from bench.backends.oci_cli import OciCliBackend


class RuncBackend(OciCliBackend):
    name = "runc"
