"""``vmvc-runtime spec``: the default config.json, runc's template plus a seccomp filter
with the semantics of Docker's default profile (runtime/profiles/docker-default.json),
resolved for the spec's capabilities and this machine as Docker resolves it."""

from __future__ import annotations

import json
import platform
from importlib import resources

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _kernel_at_least(minimum: str) -> bool:
    want = tuple(int(x) for x in minimum.split("."))
    have = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:len(want)])
    return have >= want


def docker_seccomp(capabilities: list[str]) -> dict:
    """Docker's default profile as an OCI seccomp section for *capabilities* on this host."""
    profile = json.loads(resources.files("runtime").joinpath(
        "profiles", "docker-default.json").read_text())
    arch = DOCKER_ARCH.get(platform.machine(), platform.machine())
    architectures: list[str] = []
    for entry in profile.get("archMap", []):
        if entry["architecture"] == f"SCMP_ARCH_{platform.machine().upper()}":
            architectures = [entry["architecture"], *entry.get("subArchitectures", [])]
    caps = set(capabilities)
    syscalls = []
    for rule in profile["syscalls"]:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            continue
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
            continue
        if set(exc.get("caps") or []) & caps or arch in (exc.get("arches") or []):
            continue
        out = {"names": rule["names"], "action": rule["action"]}
        if rule.get("args"):
            out["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                           for a in rule["args"]]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        syscalls.append(out)
    section = {"defaultAction": profile["defaultAction"], "architectures": architectures,
               "syscalls": syscalls}
    if profile.get("defaultErrnoRet") is not None:
        section["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return section


def default_spec(args: list[str] | None = None, rootfs: str = "rootfs") -> dict:
    """runc's ``spec`` template (runc/libcontainer/specconv/example.go) with Docker's seccomp."""
    caps = list(DEFAULT_CAPS)
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                             "inheritable": [], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "vmvc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": docker_seccomp(caps),
        },
    }


def spec_json(args: list[str] | None = None) -> str:
    return json.dumps(default_spec(args), indent=2) + "\n"

