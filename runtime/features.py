"""``vmvc-runtime features``: what this runtime implements, in runc's JSON (the OCI
runtime-spec's features document), so an engine can ask instead of finding out by failure.
Built from the same tables the config checks use: what it lists is what it accepts."""

from __future__ import annotations

from runtime.capabilities import NUMBER
from runtime.config import NAMESPACE_TYPES, SECCOMP_ACTIONS, SECCOMP_OPS
from runtime.mounts import COPY_UP, FLAGS, PROPAGATION
from runtime.seccomp import ARCHES, compiler_identity

VERSION = "0.1.0"


def features() -> dict:
    libseccomp = compiler_identity().split(":", 1)[1].removeprefix("libseccomp.so.")
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.0.2",
        "hooks": [],  # none: a config with hooks is refused
        "mountOptions": sorted({*FLAGS, *PROPAGATION, COPY_UP}),
        "linux": {
            "namespaces": sorted(NAMESPACE_TYPES),
            "capabilities": sorted(NUMBER),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(SECCOMP_ACTIONS),
                        "operators": sorted(SECCOMP_OPS), "archs": sorted(ARCHES)},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"io.github.seccomp.libseccomp.version": libseccomp,
                        "org.vmvc.runtime.version": VERSION},
    }
