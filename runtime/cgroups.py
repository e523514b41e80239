"""Resource control with cgroups: v2 (unified) and v1, the hybrid layout treated as v1, as
runc, crun and youki do. One directory per container (``vmvc-<id>`` at each hierarchy's root
unless the config's cgroupsPath says otherwise; no shared parent is left behind), limits
written from the OCI resources, usage read back, and the directories removed on delete.

File names and conversions follow opencontainers/cgroups (fs/ and fs2/).
"""

from __future__ import annotations

import errno
import math
import os
import time

from runtime.config import DeviceRule, Resources
from runtime.errors import ContainerError
from runtime.records import Record

ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "devices", "freezer", "hugetlb")
V2_CONTROLLERS = ("cpu", "cpuset", "memory", "pids", "hugetlb")
DEFAULT_PREFIX = "vmvc-"
ALWAYS_ALLOWED_DEVICES = [  # runc's AllowedDevices, appended after the spec's own rules
    DeviceRule(True, "c", None, None, "m"), DeviceRule(True, "b", None, None, "m"),
    *(DeviceRule(True, "c", major, minor, "rwm")
      for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2))),
    DeviceRule(True, "c", 136, None, "rwm"),  # /dev/pts/*
]


def device_rules(resources: Resources) -> list[DeviceRule]:
    """The spec's device rules as the spec means them, then the ones always allowed.

    OCI type "a" with a major or minor means that number as a char device and as a block
    device (crun's eBPF filter reads it so). Written as "a 1:3 rwm", cgroup v1 takes it for
    every device, as runc 1.1 and crun 1.8 leave it there: it is spelled out as c and b.
    """
    rules = []
    for rule in resources.devices:
        if rule.type == "a" and (rule.major is not None or rule.minor is not None):
            rules += [rule.replace(type="c"), rule.replace(type="b")]
        else:
            rules.append(rule)
    return [*rules, *ALWAYS_ALLOWED_DEVICES]


class Usage(Record):
    memory_current: int  # bytes
    memory_peak: int | None  # bytes, None where the kernel does not keep it
    cpu_ns: int  # CPU time of all the container's processes
    pids_current: int
    oom_kills: int  # processes the OOM killer killed for this cgroup's memory limit


def _write(path: str, value: str) -> None:
    """Write a cgroup file; the kernel's refusal (EINVAL, EBUSY…) surfaces here, not later."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise ContainerError(f"cgroup: writing {value!r} to {path}: {exc.strerror}") from exc


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read().strip()


def _write_hugetlb(directory: str, name: str, size: str, limit: int) -> None:
    path = _join(directory, name)
    if not os.path.exists(path):
        raise ContainerError(f"linux.resources.hugepageLimits: no {size} huge pages here "
                             f"(no {name})")
    _write(path, str(limit))


def _join(*parts: str) -> str:
    return "/".join(parts)


def is_unified(root: str = ROOT) -> bool:
    """cgroup v2 mounted at the root (hybrid hosts, cgroup2 at root/unified, count as v1)."""
    return os.path.exists(_join(root, "cgroup.controllers"))


def relative_path(cgroups_path: str | None, container_id: str) -> str:
    """The container's cgroup, relative to each hierarchy's root."""
    if not cgroups_path:
        return f"{DEFAULT_PREFIX}{container_id}"
    if ":" in cgroups_path:
        raise ContainerError(f"config.json: linux.cgroupsPath {cgroups_path!r}: systemd "
                             "slices are not supported")
    parts = [p for p in cgroups_path.split("/") if p]
    if not parts or ".." in parts:
        raise ContainerError(f"config.json: linux.cgroupsPath {cgroups_path!r} is not a path")
    return "/".join(parts)  # absolute, or relative to the root: the same place here


def _field(text: str, name: str) -> int:
    """A counter from a ``key value`` per line file (memory.oom_control, memory.events)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def _shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) → cpu.weight (1..10000), as ConvertCPUSharesToCgroupV2Value."""
    exponent = (math.log2(shares) ** 2 + 125 * math.log2(shares)) / 612.0 - 7.0 / 34.0
    return math.ceil(10 ** exponent)


class Cgroup:
    """The operations both versions offer; ``for_container`` picks the right one."""

    unified = False
    created = False  # made by this object's create(): only then may a failed create undo it
    device_filter_error: str | None = None  # why create() could not enforce the device rules

    def refuse_existing(self) -> None:
        """A container never adopts an existing cgroup (its processes would be killed with
        the container's, its limits overwritten)."""
        for path in self.paths():
            if os.path.exists(path):
                raise ContainerError(f"cgroup {path} already exists: another container or "
                                     "service uses it (linux.cgroupsPath)")

    def create(self, resources: Resources) -> None:
        raise NotImplementedError

    def add(self, pid: int) -> None:
        raise NotImplementedError

    def usage(self) -> Usage:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def delete(self) -> None:
        raise NotImplementedError

    def paths(self) -> list[str]:
        raise NotImplementedError

    def apply(self, resources: Resources) -> None:
        raise NotImplementedError

    def freeze(self, frozen: bool) -> None:
        """Freeze (pause) or thaw (resume) every process, and wait until the kernel says it
        is done (a freeze takes effect task by task)."""
        raise NotImplementedError


def frozen(rel: str, root: str = ROOT) -> bool:
    """Whether the container's cgroup *rel* is frozen (paused), read in one file."""
    for path, value in ((_join(root, "freezer", rel, "freezer.state"), "FROZEN"),
                        (_join(root, rel, "cgroup.freeze"), "1")):
        try:
            return _read(path).strip() == value
        except OSError:
            continue
    return False


def _wait_for(path: str, wanted: str, what: str) -> None:
    """Poll a cgroup file until a line of it is *wanted* (bounded: 5 s)."""
    deadline = time.monotonic() + 5
    while wanted not in _read(path).splitlines():
        if time.monotonic() > deadline:
            raise ContainerError(f"cgroup: {what} did not finish within 5 s")
        time.sleep(0.001)


def _rmdir_waiting(path: str) -> None:
    """rmdir a cgroup; EBUSY while its last tasks are still exiting, so retry briefly."""
    for _ in range(200):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise ContainerError(f"cgroup: cannot remove {path}: {exc.strerror}") from exc
            time.sleep(0.005)
    raise ContainerError(f"cgroup: {path} still has processes")


class CgroupV1(Cgroup):
    def __init__(self, rel: str, root: str = ROOT) -> None:
        self.rel = rel
        self.root = root
        self.dirs = {c: _join(root, c, rel) for c in V1_CONTROLLERS
                     if os.path.isdir(_join(root, c))}
        missing = [c for c in ("memory", "cpu", "cpuacct", "pids", "cpuset", "devices")
                   if c not in self.dirs]
        if missing:
            raise ContainerError(f"cgroup v1: controller(s) {', '.join(missing)} not mounted "
                                 f"under {root}")

    def paths(self) -> list[str]:
        return list(self.dirs.values())

    def _make(self, controller: str) -> str:
        path = self.dirs[controller]
        if controller == "cpuset":  # an empty cpuset admits no task: inherit each level's
            level = _join(self.root, "cpuset")
            for part in self.rel.split("/"):
                parent, level = level, _join(level, part)
                if not os.path.exists(level):
                    os.mkdir(level)
                    for name in ("cpuset.cpus", "cpuset.mems"):
                        _write(_join(level, name), _read(_join(parent, name)))
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.mkdir(path)
        return path

    def create(self, resources: Resources) -> None:
        self.refuse_existing()
        self.created = True
        for controller in self.dirs:
            self._make(controller)
        self.apply(resources)
        r, d = resources, self.dirs
        _write(_join(d["devices"], "devices.deny"), "a")  # denied unless allowed below
        for rule in device_rules(r):
            major = "*" if rule.major is None else str(rule.major)
            minor = "*" if rule.minor is None else str(rule.minor)
            entry = "a" if rule.type == "a" else f"{rule.type} {major}:{minor} {rule.access}"
            _write(_join(d["devices"], ("devices.allow" if rule.allow else "devices.deny")), entry)

    def apply(self, resources: Resources) -> None:
        """Write the limits *resources* sets (at create, and by ``update`` while it runs)."""
        r, d = resources, self.dirs
        if r.memory_limit is not None:
            _write(_join(d["memory"], "memory.limit_in_bytes"), str(r.memory_limit))
        if r.memory_swap is not None:
            swap_file = _join(d["memory"], "memory.memsw.limit_in_bytes")
            if not os.path.exists(swap_file):
                raise ContainerError("linux.resources.memory.swap: the kernel does not account "
                                     "swap here (no memory.memsw.limit_in_bytes)")
            _write(swap_file, str(r.memory_swap))
        if r.memory_reservation is not None:
            _write(_join(d["memory"], "memory.soft_limit_in_bytes"), str(r.memory_reservation))
        if r.cpu_shares is not None:
            _write(_join(d["cpu"], "cpu.shares"), str(r.cpu_shares))
        if r.cpu_period is not None:
            _write(_join(d["cpu"], "cpu.cfs_period_us"), str(r.cpu_period))
        if r.cpu_quota is not None:
            _write(_join(d["cpu"], "cpu.cfs_quota_us"), str(r.cpu_quota))
        if r.cpuset_cpus:
            _write(_join(d["cpuset"], "cpuset.cpus"), r.cpuset_cpus)
        if r.cpuset_mems:
            _write(_join(d["cpuset"], "cpuset.mems"), r.cpuset_mems)
        if r.pids_limit is not None:
            _write(_join(d["pids"], "pids.max"), "max" if r.pids_limit <= 0 else str(r.pids_limit))
        for size, limit in r.hugepage_limits:
            if "hugetlb" not in d:
                raise ContainerError("linux.resources.hugepageLimits: the hugetlb controller is "
                                     "not mounted here")
            _write_hugetlb(d["hugetlb"], f"hugetlb.{size}.limit_in_bytes", size, limit)

    def add(self, pid: int) -> None:
        for path in self.dirs.values():
            _write(_join(path, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in _read(_join(self.dirs["pids"], "cgroup.procs")).split()]
        except FileNotFoundError:
            return []

    def freeze(self, frozen: bool) -> None:
        if "freezer" not in self.dirs:
            raise ContainerError("cgroup v1: the freezer controller is not mounted: no pause")
        state = "FROZEN" if frozen else "THAWED"
        path = _join(self.dirs["freezer"], "freezer.state")
        _write(path, state)
        _wait_for(path, state, f"{'freezing' if frozen else 'thawing'} {self.rel}")

    def usage(self) -> Usage:
        mem = self.dirs["memory"]
        return Usage(
            memory_current=int(_read(_join(mem, "memory.usage_in_bytes"))),
            memory_peak=int(_read(_join(mem, "memory.max_usage_in_bytes"))),
            cpu_ns=int(_read(_join(self.dirs["cpuacct"], "cpuacct.usage"))),
            pids_current=int(_read(_join(self.dirs["pids"], "pids.current"))),
            oom_kills=_field(_read(_join(mem, "memory.oom_control")), "oom_kill"),
        )

    def delete(self) -> None:
        for path in self.dirs.values():
            _rmdir_waiting(path)


class CgroupV2(Cgroup):
    unified = True

    def __init__(self, rel: str, root: str = ROOT) -> None:
        self.rel = rel
        self.root = root
        self.dir = _join(root, rel)

    def paths(self) -> list[str]:
        return [self.dir]

    def _enable_controllers(self) -> None:
        """Delegate the controllers down to the container's parent (subtree_control)."""
        available = set(_read(_join(self.root, "cgroup.controllers")).split())
        wanted = [c for c in V2_CONTROLLERS if c in available]
        level = self.root
        for part in self.rel.split("/")[:-1]:
            enabled = set(_read(_join(level, "cgroup.subtree_control")).split())
            if missing := [c for c in wanted if c not in enabled]:
                _write(_join(level, "cgroup.subtree_control"), " ".join(f"+{c}" for c in missing))
            level = _join(level, part)
            os.makedirs(level, exist_ok=True)
        enabled = set(_read(_join(level, "cgroup.subtree_control")).split())
        if missing := [c for c in wanted if c not in enabled]:
            _write(_join(level, "cgroup.subtree_control"), " ".join(f"+{c}" for c in missing))

    def create(self, resources: Resources) -> None:
        self.refuse_existing()
        self._enable_controllers()
        self.created = True
        os.mkdir(self.dir)
        self.apply(resources)
        self._filter_devices(device_rules(resources))

    def apply(self, resources: Resources) -> None:
        """Write the limits *resources* sets (at create, and by ``update`` while it runs)."""
        r, d = resources, self.dir
        if r.memory_limit is not None:
            _write(_join(d, "memory.max"), "max" if r.memory_limit == -1 else str(r.memory_limit))
        if r.memory_swap is not None:
            if r.memory_swap == -1:
                swap = "max"
            elif r.memory_limit in (None, -1):
                raise ContainerError("linux.resources.memory.swap needs memory.limit on "
                                     "cgroup v2")
            else:
                swap = str(r.memory_swap - r.memory_limit)  # v2 counts swap alone
            _write(_join(d, "memory.swap.max"), swap)
        if r.memory_reservation is not None:
            _write(_join(d, "memory.low"), str(max(r.memory_reservation, 0)))
        if r.cpu_shares is not None:
            _write(_join(d, "cpu.weight"), str(_shares_to_weight(r.cpu_shares)))
        if r.cpu_quota is not None or r.cpu_period is not None:
            quota = "max" if r.cpu_quota in (None, -1) else str(r.cpu_quota)
            _write(_join(d, "cpu.max"), f"{quota} {r.cpu_period or 100000}")
        if r.cpuset_cpus:
            _write(_join(d, "cpuset.cpus"), r.cpuset_cpus)
        if r.cpuset_mems:
            _write(_join(d, "cpuset.mems"), r.cpuset_mems)
        if r.pids_limit is not None:
            _write(_join(d, "pids.max"), "max" if r.pids_limit <= 0 else str(r.pids_limit))
        for size, limit in r.hugepage_limits:
            _write_hugetlb(d, f"hugetlb.{size}.max", size, limit)

    def _filter_devices(self, rules: list[DeviceRule]) -> None:
        """v2 has no devices controller: an eBPF program attached to the cgroup does its job.
        A kernel that refuses it is noted, not fatal: the caller decides what that allows."""
        from runtime import device_filter  # only v2 pays for importing eBPF

        try:
            device_filter.install(self.dir, rules)
        except OSError as exc:
            self.device_filter_error = exc.strerror or str(exc)

    def add(self, pid: int) -> None:
        _write(_join(self.dir, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in _read(_join(self.dir, "cgroup.procs")).split()]
        except FileNotFoundError:
            return []

    def freeze(self, frozen: bool) -> None:
        _write(_join(self.dir, "cgroup.freeze"), "1" if frozen else "0")
        _wait_for(_join(self.dir, "cgroup.events"), f"frozen {int(frozen)}",
                  f"{'freezing' if frozen else 'thawing'} {self.rel}")

    def usage(self) -> Usage:
        cpu = dict(line.split() for line in _read(_join(self.dir, "cpu.stat")).splitlines())
        peak = _join(self.dir, "memory.peak")
        return Usage(
            memory_current=int(_read(_join(self.dir, "memory.current"))),
            memory_peak=int(_read(peak)) if os.path.exists(peak) else None,
            cpu_ns=int(cpu["usage_usec"]) * 1000,
            pids_current=int(_read(_join(self.dir, "pids.current"))),
            oom_kills=_field(_read(_join(self.dir, "memory.events")), "oom_kill"),
        )

    def delete(self) -> None:
        _rmdir_waiting(self.dir)


def at(rel: str, root: str = ROOT) -> Cgroup:
    """The cgroup *rel* (relative to each hierarchy's root) in this host's layout."""
    return CgroupV2(rel, root) if is_unified(root) else CgroupV1(rel, root)


def for_container(cgroups_path: str | None, container_id: str, root: str = ROOT) -> Cgroup:
    return at(relative_path(cgroups_path, container_id), root)


def memory_dir_of(pid: int, root: str = ROOT) -> str | None:
    """The memory cgroup *pid* is charged to (v1's memory hierarchy, or v2's), None if its
    memory is not accounted in one."""
    unified = is_unified(root)
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if unified and controllers == "":
                return _join(root, path.strip("/")).rstrip("/")
            if not unified and "memory" in controllers.split(","):
                return _join(root, "memory", path.strip("/")).rstrip("/")
    return None


def memory_usage_bytes(directory: str) -> int:
    """Bytes charged to the memory cgroup *directory* (pages, page cache, kernel memory)."""
    name = "memory.current" if os.path.exists(_join(directory, "memory.current")) \
        else "memory.usage_in_bytes"
    return int(_read(_join(directory, name)))


def procs(directory: str) -> list[int]:
    """The processes in the cgroup *directory* (its own, not its children's)."""
    try:
        return [int(p) for p in _read(_join(directory, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


class MemoryAccount:
    """A memory cgroup and nothing else: no limit, no other controller, no device rule.
    Accounting, not isolation: what the bench's bare instances are counted in, so that their
    memory is read as a container's is."""

    def __init__(self, rel: str, root: str = ROOT) -> None:
        self.unified = is_unified(root)
        self.dir = _join(root, rel) if self.unified else _join(root, "memory", rel)

    def create(self) -> None:
        parent = os.path.dirname(self.dir)
        if self.unified and "memory" not in _read(_join(parent, "cgroup.subtree_control")).split():
            _write(_join(parent, "cgroup.subtree_control"), "+memory")
        try:
            os.mkdir(self.dir)
        except FileExistsError as exc:
            raise ContainerError(f"cgroup {self.dir} already exists") from exc

    def add(self, pid: int) -> None:
        _write(_join(self.dir, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        return procs(self.dir)

    def delete(self) -> None:
        _rmdir_waiting(self.dir)
