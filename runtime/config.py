"""The OCI runtime spec's config.json, read and checked: every value the runtime uses is
validated here, and every field it does not implement is refused by name (a security
setting is never silently ignored)."""

from __future__ import annotations

import marshal
import os
import resource

from runtime.capabilities import NUMBER as CAP_NUMBER
from runtime.capabilities import SETS as CAP_SETS
from runtime.errors import ContainerError
from runtime.records import Record

CONFIG_CACHE_SIZE = 256
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup")
RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}
PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared", "")
NAMESPACED_SYSCTLS = {  # prefix → the namespace that makes it the container's own (runc)
    "kernel.msgmax": "ipc", "kernel.msgmnb": "ipc", "kernel.msgmni": "ipc", "kernel.sem": "ipc",
    "kernel.shmall": "ipc", "kernel.shmmax": "ipc", "kernel.shmmni": "ipc",
    "kernel.shm_rmid_forced": "ipc", "fs.mqueue.": "ipc", "net.": "network",
    "kernel.domainname": "uts", "kernel.hostname": "uts",
}
# net.* sysctls that a new network namespace shows writable although they act on the whole
# host: runc allows any net.* in a new netns and trusts the kernel, whose check (read-only
# outside the initial netns when .data points at global data) misses handlers that flip
# global state. Measured on 6.18: every writable entry in a fresh netns, read against the
# kernel source. Others global (net.core.rmem_max, nf_conntrack_max…) the kernel hides or
# makes read-only there, so their write fails by itself.
GLOBAL_NET_SYSCTLS = {
    "net.netfilter.nf_hooks_lwtunnel": "it switches a kernel-wide static key on, for good",
}


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


class Hook(Record):
    path: str
    args: list[str]
    env: list[str]
    timeout: int | None  # seconds


class Mount(Record):
    destination: str
    type: str
    source: str
    options: list[str]


class DeviceRule(Record):
    allow: bool
    type: str  # a, c, b
    major: int | None
    minor: int | None
    access: str


class Device(Record):
    path: str
    type: str  # c, b, u, p
    major: int
    minor: int
    file_mode: int
    uid: int
    gid: int


class Resources(Record):
    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    hugepage_limits: list[tuple[str, int]] = []  # (page size as the kernel names it, bytes)
    devices: list[DeviceRule] = []


class IdMapping(Record):
    container_id: int
    host_id: int
    size: int


class Spec(Record):
    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    additional_gids: list[int]
    username: str | None
    rlimits: list[tuple[int, int, int]]
    no_new_privileges: bool
    capabilities: dict[str, list[str]]
    oom_score_adj: int | None
    umask: int | None
    root_path: str
    root_readonly: bool
    hostname: str | None
    mounts: list[Mount]
    namespaces: dict[str, str | None]  # type -> path to join, or None to create
    uid_mappings: list[IdMapping]
    gid_mappings: list[IdMapping]
    resources: Resources
    cgroups_path: str | None
    masked_paths: list[str]
    readonly_paths: list[str]
    seccomp: dict | None
    devices: list[Device]
    sysctl: dict[str, str]
    rootfs_propagation: str
    annotations: dict[str, str]
    hooks: dict[str, list[Hook]] = {}  # kind (createRuntime, poststop…) → hooks, in order
    terminal: bool = False  # a pseudo-terminal for stdio, its master sent to the engine
    console_size: tuple[int, int] | None = None  # (rows, columns)
    raw: dict = {}
    warnings: tuple[str, ...] = ()  # what is not applied, and why (runc warns the same)


class _Reader:
    """Typed access to one JSON object, with errors that name the field's full path."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise ContainerError(f"config.json: {path or 'top level'} must be an object")
        self.value = value
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def refuse_unsupported(self, unsupported: set[str]) -> None:
        """*unsupported*: the properties the OCI spec defines for this object that this
        runtime does not apply, refused unless empty (a value it cannot apply is an error).
        A property the spec does not define is ignored, as the spec requires ("MUST NOT
        generate an error if it encounters an unknown property")."""
        for key, value in self.value.items():
            if key in unsupported and value not in (None, "", [], {}, False):
                raise ContainerError(f"config.json: {self.name(key)} is not supported by "
                                     "vmvc-runtime")

    def get(self, key: str, kind: type | tuple[type, ...], default: object = None,
            required: bool = False) -> object:
        if key not in self.value or self.value[key] is None:
            if required:
                raise ContainerError(f"config.json: {self.name(key)} is required")
            return default
        value = self.value[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ContainerError(f"config.json: {self.name(key)} must be {_kind_name(kinds)}")
        if not isinstance(value, kinds):
            raise ContainerError(f"config.json: {self.name(key)} must be {_kind_name(kinds)}")
        return value

    def sub(self, key: str) -> _Reader:
        return _Reader(self.value.get(key) or {}, self.name(key))

    def strings(self, key: str, default: list[str] | None = None) -> list[str]:
        values = self.get(key, list, default if default is not None else [])
        if not all(isinstance(v, str) for v in values):
            raise ContainerError(f"config.json: {self.name(key)} must be a list of strings")
        return values

    def uint(self, key: str, default: int | None = None, *, signed: bool = False,
             required: bool = False) -> int | None:
        value = self.get(key, int, default, required)
        if value is not None and value < 0 and not signed:
            raise ContainerError(f"config.json: {self.name(key)} must not be negative ({value})")
        return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer",
             bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _ints(values: list, where: str) -> list[int]:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ContainerError(f"config.json: {where} must be a list of non-negative integers")
    return values


def _absolute(path: str, where: str) -> str:
    if not path.startswith("/"):
        raise ContainerError(f"config.json: {where} must be an absolute path ({path!r})")
    return path


def _process(cfg: _Reader) -> dict[str, object]:
    proc = cfg.sub("process")
    if "process" not in cfg.value:
        raise ContainerError("config.json: process is required")
    proc.refuse_unsupported({"apparmorProfile", "selinuxLabel", "ioPriority", "scheduler",
                             "execCPUAffinity", "commandLine"})
    size = proc.sub("consoleSize")
    console_size = (size.uint("height", required=True), size.uint("width", required=True)) \
        if "consoleSize" in proc.value else None
    args = proc.strings("args")
    if not args or not args[0]:
        raise ContainerError("config.json: process.args must name a program")
    env = proc.strings("env")
    for item in env:
        if "=" not in item:
            raise ContainerError(f"config.json: process.env entry {item!r} is not NAME=VALUE")
    cwd = _absolute(proc.get("cwd", str, "/"), "process.cwd")
    user = proc.sub("user")
    caps = proc.sub("capabilities")
    capabilities = {}
    for name in CAP_SETS:
        values = caps.strings(name)
        for cap in values:
            if cap not in CAP_NUMBER:
                raise ContainerError(f"config.json: process.capabilities.{name}: "
                                     f"unknown capability {cap!r}")
        capabilities[name] = values
    # the kernel raises an ambient capability only if it is permitted and inheritable:
    # runc and crun warn and go on without it (runc spec's default config has ambient but
    # no inheritable set), and so does this runtime
    unraisable = [c for c in capabilities["ambient"]
                  if c not in capabilities["permitted"] or c not in capabilities["inheritable"]]
    capabilities["ambient"] = [c for c in capabilities["ambient"] if c not in unraisable]
    warnings = tuple(f"process.capabilities.ambient: {c} is not both permitted and "
                     "inheritable: not raised" for c in unraisable)
    rlimits = []
    for i, item in enumerate(proc.get("rlimits", list, [])):
        limit = _Reader(item, f"process.rlimits[{i}]")
        kind = limit.get("type", str, required=True)
        if kind not in RLIMITS:
            raise ContainerError(f"config.json: process.rlimits[{i}].type: unknown {kind!r}")
        soft, hard = limit.uint("soft", required=True), limit.uint("hard", required=True)
        if soft > hard:
            raise ContainerError(f"config.json: process.rlimits[{i}]: soft {soft} > hard {hard}")
        rlimits.append((RLIMITS[kind], soft, hard))
    return {
        "args": args, "env": env, "cwd": cwd,
        "uid": user.uint("uid", 0), "gid": user.uint("gid", 0),
        "additional_gids": _ints(user.get("additionalGids", list, []),
                                 "process.user.additionalGids"),
        "umask": user.uint("umask"),
        "username": user.get("username", str),
        "rlimits": rlimits, "no_new_privileges": proc.get("noNewPrivileges", bool, False),
        "capabilities": capabilities, "oom_score_adj": proc.uint("oomScoreAdj", signed=True),
        "terminal": proc.get("terminal", bool, False), "console_size": console_size,
        "warnings": warnings,
    }


def _hooks(cfg: _Reader) -> dict[str, list[Hook]]:
    """The lifecycle hooks (runtime-spec config.md#posix-platform-hooks), kinds not defined
    by the spec ignored like any unknown property."""
    hooks = cfg.sub("hooks")
    found = {}
    for kind in HOOK_KINDS:
        items = []
        for i, item in enumerate(hooks.get(kind, list, [])):
            hook = _Reader(item, f"hooks.{kind}[{i}]")
            timeout = hook.uint("timeout")
            if timeout is not None and timeout <= 0:
                raise ContainerError(f"config.json: hooks.{kind}[{i}].timeout must be > 0")
            items.append(Hook(path=_absolute(hook.get("path", str, required=True),
                                             f"hooks.{kind}[{i}].path"),
                              args=hook.strings("args"), env=hook.strings("env"),
                              timeout=timeout))
        if items:
            found[kind] = items
    return found


def _mounts(cfg: _Reader) -> list[Mount]:
    mounts = []
    for i, item in enumerate(cfg.get("mounts", list, [])):
        m = _Reader(item, f"mounts[{i}]")
        m.refuse_unsupported({"uidMappings", "gidMappings"})
        dest = _absolute(m.get("destination", str, required=True), f"mounts[{i}].destination")
        options = m.strings("options")
        kind = m.get("type", str, "bind" if {"bind", "rbind"} & set(options) else "")
        if not kind:
            raise ContainerError(f"config.json: mounts[{i}].type is required")
        mounts.append(Mount(dest, kind, m.get("source", str, kind), options))
    return mounts


def _id_mappings(linux: _Reader, key: str) -> list[IdMapping]:
    mappings = []
    for i, item in enumerate(linux.get(key, list, [])):
        m = _Reader(item, f"linux.{key}[{i}]")
        mappings.append(IdMapping(m.uint("containerID", required=True),
                                  m.uint("hostID", required=True), m.uint("size", required=True)))
    return mappings


def _resources(linux: _Reader) -> Resources:
    res = linux.sub("resources")
    block = res.value.get("blockIO")
    if isinstance(block, dict) and block.get("weight") == 0:  # Docker always sends it; runc
        # and crun read a zero weight as unset, and so does this runtime
        res = _Reader({**res.value, "blockIO": {k: v for k, v in block.items()
                                                if k != "weight"}}, res.path)
    res.refuse_unsupported({"blockIO", "network", "rdma", "unified"})
    memory, cpu, pids = res.sub("memory"), res.sub("cpu"), res.sub("pids")
    # kernel, kernelTCP: deprecated, ignored by the kernels that still read them; runc and
    # crun accept and ignore them, so does this runtime
    memory.refuse_unsupported({"swappiness", "disableOOMKiller", "useHierarchy",
                               "checkBeforeUpdate"})
    cpu.refuse_unsupported({"realtimeRuntime", "realtimePeriod", "idle", "burst"})
    limit = memory.uint("limit", signed=True)
    if (limit is not None and limit < -1) or limit == 0:
        raise ContainerError(f"config.json: linux.resources.memory.limit must be positive or -1 "
                             f"({limit})")
    swap = memory.uint("swap", signed=True)
    if swap is not None and limit is not None and limit > 0 and 0 <= swap < limit:
        raise ContainerError("config.json: linux.resources.memory.swap (memory+swap) must be "
                             f">= memory.limit ({swap} < {limit})")
    quota, period = cpu.uint("quota", signed=True), cpu.uint("period")
    if (quota is not None and quota == 0) or period == 0:
        raise ContainerError("config.json: linux.resources.cpu quota and period must be > 0")
    shares = cpu.uint("shares") or None  # 0 (Docker's default): unset, as runc and crun read it
    if shares is not None and not 2 <= shares <= 262144:
        raise ContainerError(f"config.json: linux.resources.cpu.shares must be 2..262144 "
                             f"({shares})")
    rules = []
    for i, item in enumerate(res.get("devices", list, [])):
        d = _Reader(item, f"linux.resources.devices[{i}]")
        kind = d.get("type", str, "a")
        access = d.get("access", str, "rwm")
        if kind not in ("a", "c", "b") or not access or set(access) - set("rwm"):
            raise ContainerError(f"config.json: linux.resources.devices[{i}] has type {kind!r} "
                                 f"or access {access!r}")
        rules.append(DeviceRule(d.get("allow", bool, required=True), kind,
                                d.uint("major"), d.uint("minor"), access))
    return Resources(
        memory_limit=limit, memory_reservation=memory.uint("reservation", signed=True),
        memory_swap=swap, cpu_shares=shares, cpu_quota=quota, cpu_period=period,
        cpuset_cpus=cpu.get("cpus", str), cpuset_mems=cpu.get("mems", str),
        pids_limit=pids.uint("limit", signed=True), devices=rules,
        hugepage_limits=_hugepage_limits(res),
    )


def _hugepage_limits(res: _Reader) -> list[tuple[str, int]]:
    limits = []
    for i, item in enumerate(res.get("hugepageLimits", list, [])):
        limit = _Reader(item, f"linux.resources.hugepageLimits[{i}]")
        size = limit.get("pageSize", str, required=True)
        if not (size[:-2].isdigit() and size[-2:] in ("KB", "MB", "GB")):
            raise ContainerError(f"config.json: linux.resources.hugepageLimits[{i}].pageSize "
                                 f"{size!r}: give it as the kernel does (2MB, 1GB)")
        limits.append((size, limit.uint("limit", required=True)))
    return limits


def _devices(linux: _Reader) -> list[Device]:
    devices = []
    for i, item in enumerate(linux.get("devices", list, [])):
        d = _Reader(item, f"linux.devices[{i}]")
        kind = d.get("type", str, required=True)
        if kind not in ("c", "b", "u", "p"):
            raise ContainerError(f"config.json: linux.devices[{i}].type: unknown {kind!r}")
        devices.append(Device(_absolute(d.get("path", str, required=True),
                                        f"linux.devices[{i}].path"), kind,
                              d.uint("major", 0), d.uint("minor", 0), d.uint("fileMode", 0o666),
                              d.uint("uid", 0), d.uint("gid", 0)))
    return devices


def _namespaces(linux: _Reader) -> dict[str, str | None]:
    namespaces: dict[str, str | None] = {}
    for i, item in enumerate(linux.get("namespaces", list, [])):
        n = _Reader(item, f"linux.namespaces[{i}]")
        kind = n.get("type", str, required=True)
        if kind not in NAMESPACE_TYPES:
            raise ContainerError(f"config.json: linux.namespaces[{i}].type: unknown namespace "
                                 f"type {kind!r}")
        if kind in namespaces:
            raise ContainerError(f"config.json: linux.namespaces: {kind} given twice")
        namespaces[kind] = n.get("path", str)
    return namespaces


def _is_host_namespace(kind: str, path: str | None) -> bool:
    """Is the namespace joined at *path* the runtime's own (the host's)? A new one (no
    path) never is; one an engine made (podman's /run/netns/…) is the container's, and its
    sysctls are the container's to set, as runc allows. A path that cannot be read is
    treated as the host's: nothing is written through a namespace we cannot tell apart."""
    if path is None:
        return False
    from runtime.linux import namespace_id

    try:
        joined = os.stat(path)
        return (joined.st_dev, joined.st_ino) == namespace_id(kind)
    except OSError:
        return True


def parse_resources(raw: object) -> Resources:
    """An OCI linux.resources object on its own (``update -r FILE``), checked as
    config.json's is."""
    return _resources(_Reader({"resources": raw}, "linux"))


def parse_update(raw: object) -> Resources:
    """``update``'s resources, read as runc reads them: a zero or empty value leaves the
    limit as it is (containerd sends every field, the unchanged ones as 0 or "")."""
    if not isinstance(raw, dict):
        return parse_resources(raw)
    given: dict = {}
    for section, fields in raw.items():
        if isinstance(fields, dict):
            kept = {k: v for k, v in fields.items() if v not in (0, "", None)}
            if kept:
                given[section] = kept
        elif fields not in (None, [], {}):
            given[section] = fields
    return parse_resources(given)


def parse_process(raw: object) -> dict[str, object]:
    """An OCI process object on its own (``exec --process FILE``, as containerd and conmon
    call it): the Spec fields it sets, checked as config.json's process is."""
    return _process(_Reader({"process": raw}, ""))


def parse_config(raw: dict) -> Spec:
    """Check *raw* (a parsed config.json) and return what the runtime will apply."""
    cfg = _Reader(raw, "")
    cfg.refuse_unsupported({"domainname", "solaris", "windows", "vm", "zos"})
    root = cfg.sub("root")
    linux = cfg.sub("linux")
    linux.refuse_unsupported({"mountLabel", "intelRdt", "personality", "timeOffsets",
                              "netDevices", "memoryPolicy"})
    propagation = linux.get("rootfsPropagation", str, "")
    if propagation not in PROPAGATIONS:
        raise ContainerError(f"config.json: linux.rootfsPropagation {propagation!r} is not "
                             f"supported (one of {', '.join(p for p in PROPAGATIONS if p)})")
    seccomp = linux.get("seccomp", dict)
    if seccomp is not None:
        _check_seccomp(_Reader(seccomp, "linux.seccomp"))
    namespaces = _namespaces(linux)
    if "mount" not in namespaces or namespaces["mount"] is not None:
        raise ContainerError("config.json: linux.namespaces needs a new mount namespace (type "
                             "mount without a path): the container's /proc, /dev and /sys "
                             "would stay mounted in the host's or the joined namespace")
    sysctl = {str(k): str(v) for k, v in linux.get("sysctl", dict, {}).items()}
    for key in sysctl:
        owner = next((ns for prefix, ns in NAMESPACED_SYSCTLS.items()
                      if key == prefix or (prefix.endswith(".") and key.startswith(prefix))),
                     None)
        if owner is None or owner not in namespaces or _is_host_namespace(owner,
                                                                          namespaces[owner]):
            raise ContainerError(f"config.json: linux.sysctl {key} is not a sysctl of this "
                                 "container's own namespaces: it would change the host")
        why = GLOBAL_NET_SYSCTLS.get(".".join(p for p in key.replace("/", ".").split(".") if p))
        if why is not None:  # the same name however its separators are spelled
            raise ContainerError(f"config.json: linux.sysctl.{key} is not namespaced although "
                                 f"a new network namespace shows it: {why}")
    uid_maps, gid_maps = _id_mappings(linux, "uidMappings"), _id_mappings(linux, "gidMappings")
    if (uid_maps or gid_maps) and "user" not in namespaces:
        raise ContainerError("config.json: linux.uidMappings need a user namespace")
    if "user" in namespaces and namespaces["user"] is None and not (uid_maps and gid_maps):
        raise ContainerError("config.json: a new user namespace needs linux.uidMappings and "
                             "linux.gidMappings")
    return Spec(
        **_process(cfg),
        root_path=root.get("path", str, required=True),
        root_readonly=root.get("readonly", bool, False),
        hostname=cfg.get("hostname", str),
        mounts=_mounts(cfg),
        namespaces=namespaces, uid_mappings=uid_maps, gid_mappings=gid_maps,
        resources=_resources(linux),
        cgroups_path=linux.get("cgroupsPath", str),
        masked_paths=[_absolute(p, "linux.maskedPaths") for p in linux.strings("maskedPaths")],
        readonly_paths=[_absolute(p, "linux.readonlyPaths")
                        for p in linux.strings("readonlyPaths")],
        seccomp=seccomp, devices=_devices(linux),
        sysctl=sysctl,
        rootfs_propagation=propagation,
        hooks=_hooks(cfg),
        annotations={str(k): str(v) for k, v in cfg.get("annotations", dict, {}).items()},
        raw=raw,
    )


SECCOMP_ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                   "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                   "SCMP_ACT_LOG")
SECCOMP_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
               "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")


def _check_seccomp(sec: _Reader) -> None:
    sec.refuse_unsupported({"listenerPath", "listenerMetadata"})
    sec.uint("defaultErrnoRet")
    if sec.get("defaultAction", str, required=True) not in SECCOMP_ACTIONS:
        raise ContainerError(f"config.json: linux.seccomp.defaultAction: unknown "
                             f"{sec.value['defaultAction']!r}")
    for flag in sec.strings("flags"):
        if flag != "SECCOMP_FILTER_FLAG_TSYNC":
            raise ContainerError(f"config.json: linux.seccomp.flags: {flag} is not supported")
    for i, item in enumerate(sec.get("syscalls", list, [])):
        rule = _Reader(item, f"linux.seccomp.syscalls[{i}]")
        if not rule.strings("names"):
            raise ContainerError(f"config.json: linux.seccomp.syscalls[{i}].names is empty")
        if rule.get("action", str, required=True) not in SECCOMP_ACTIONS:
            raise ContainerError(f"config.json: linux.seccomp.syscalls[{i}].action: unknown "
                                 f"{rule.value['action']!r}")
        rule.uint("errnoRet")
        for j, arg in enumerate(rule.get("args", list, [])):
            a = _Reader(arg, f"linux.seccomp.syscalls[{i}].args[{j}]")
            if a.uint("index", required=True) > 5:
                raise ContainerError(f"config.json: {a.name('index')} must be 0..5")
            a.uint("value", required=True)
            a.uint("valueTwo")
            if a.get("op", str, required=True) not in SECCOMP_OPS:
                raise ContainerError(f"config.json: {a.name('op')}: unknown {a.value['op']!r}")


def load_bundle(bundle: str | os.PathLike[str], cache_dir: str | None = None) -> Spec:
    """Read and check ``<bundle>/config.json``.

    With *cache_dir*, the parsed JSON is kept there in marshal form, keyed by the file's
    identity and modification time: the next start-up skips importing json (and re),
    about 6 ms of a CLI call here. The cached data is validated like fresh data.
    """
    path = os.path.join(bundle, "config.json")
    raw = _cached_raw(path, cache_dir) if cache_dir else None
    if raw is not None:
        return parse_config(raw)
    import json

    try:
        with open(path) as handle:
            raw = json.load(handle)
    except FileNotFoundError as exc:
        raise ContainerError(f"{path}: no such file (is {bundle} an OCI bundle?)") from exc
    except ValueError as exc:
        raise ContainerError(f"{path}: malformed JSON: {exc}") from exc
    spec = parse_config(raw)
    if cache_dir:
        _store_raw(path, cache_dir, raw)
    return spec


def _cache_file(path: str, cache_dir: str) -> str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    key = f"{os.path.realpath(path)}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"
    from _sha256 import sha256

    return os.path.join(cache_dir, sha256(key.encode()).hexdigest()[:32] + ".marshal")


def _cached_raw(path: str, cache_dir: str) -> dict | None:
    cache = _cache_file(path, cache_dir)
    if cache is None:
        return None
    try:
        with open(cache, "rb") as handle:
            raw = marshal.load(handle)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return raw if isinstance(raw, dict) else None


def _store_raw(path: str, cache_dir: str, raw: dict) -> None:
    cache = _cache_file(path, cache_dir)
    if cache is None:
        return
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        entries = os.listdir(cache_dir)
        if len(entries) >= CONFIG_CACHE_SIZE:  # bounded: drop everything, refill on demand
            for name in entries:
                os.unlink(os.path.join(cache_dir, name))
        with open(f"{cache}.{os.getpid()}", "wb") as handle:
            marshal.dump(raw, handle)
        os.rename(f"{cache}.{os.getpid()}", cache)
    except OSError:
        pass  # a cache, nothing more
