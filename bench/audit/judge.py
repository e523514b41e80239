"""The probe's facts, judged against the host's: one answer per check, whether that answer
keeps the instance apart from the host, and the evidence it rests on.

A namespace id means something only on the kernel that issued it (a VM's guest numbers its
own), so namespaces are compared only when the instance runs on the host's kernel. The
checks about privilege (capabilities, seccomp, no_new_privs, modules, devices, /proc/sys)
are answered for whatever kernel the instance runs on; they isolate the host when that
kernel is the instance's own, or when the answer itself is the safe one. A fact the probe
could not read is "unknown", and unknown never counts as isolating.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# (name, a column's short header, the question it answers)
CHECKS: tuple[tuple[str, str, str], ...] = (
    ("own_kernel", "own kernel", "runs on a kernel of its own"),
    ("host_pids", "sees host PIDs", "sees the host's processes"),
    ("host_root_fs", "host's /", "has the host's root file system mounted"),
    ("own_network", "own network", "has a network stack of its own"),
    ("own_hostname", "own hostname", "has a hostname of its own"),
    ("sys_admin", "CAP_SYS_ADMIN", "holds CAP_SYS_ADMIN"),
    ("seccomp", "seccomp", "its system calls pass a seccomp filter"),
    ("no_new_privs", "no_new_privs", "runs with no_new_privs"),
    ("kernel_module", "loads modules", "may load a kernel module"),
    ("host_devices", "devices", "sees device nodes beyond the default set, or reads the "
                                "host's disk or kernel log through one it makes"),
    ("proc_sys", "/proc/sys writable", "may open /proc/sys/kernel/core_pattern for writing"),
    ("host_network", "reaches host's lo", "reaches a listener on the host's 127.0.0.1 "
                                          "(started with no network of the suite's)"),
    ("host_root", "host's root", "runs as the host's uid 0"),
)
QUESTIONS = {name: (short, question) for name, short, question in CHECKS}
CAP_SYS_MODULE, CAP_SYS_ADMIN, CAP_MKNOD = 16, 21, 27
REFUSED = ("not permitted", "does not support", "not implemented", "denied")
SIGNED_ONLY = ("key was rejected", "required key not available")  # signatures enforced
TOOK = ("invalid module format", "exec format", "invalid argument", "invalid parameters",
        "already loaded", "unknown symbol", "file exists")
NAMESPACES = ("pid", "mnt", "net", "uts", "user")


@dataclass(frozen=True)
class Check:
    name: str
    short: str  # the matrix's column header
    question: str
    answer: str  # yes | no | unknown, or a short value (seccomp's mode)
    isolates: bool  # the answer keeps the instance from the host
    evidence: str

    def as_json(self) -> dict:
        return asdict(self)


def judge(facts: dict[str, str], host: dict[str, str], reached: bool) -> list[Check]:
    """Every check of :data:`CHECKS`, in its order, from the probe's *facts*, the *host*'s
    (host.host_facts) and whether the probe's token reached the host's listener."""
    if facts.get("done") != "yes":
        raise ValueError("the probe did not finish (no done=yes line)")
    own = _own_kernel(facts, host)
    # per namespace: shares the host's (True), its own (False), unreadable (None)
    same: dict[str, bool | None] = {
        ns: False if own else (None if not facts.get(f"ns_{ns}") else
                               facts[f"ns_{ns}"] == host[f"ns_{ns}"]) for ns in NAMESPACES}
    seen = {ns: f"{facts.get(f'ns_{ns}') or 'unreadable'} (host {host[f'ns_{ns}']})"
            for ns in NAMESPACES}
    guest = " in its own kernel" if own else ""
    caps = _int(facts.get("CapEff", ""), 16)
    cap_names = [n for n, bit in (("sys_admin", CAP_SYS_ADMIN), ("sys_module", CAP_SYS_MODULE),
                                  ("mknod", CAP_MKNOD)) if caps is not None and caps >> bit & 1]
    own_user = same["user"] is False and not own
    found = [
        _check("own_kernel", _yes(own), own,
               f"kernel {facts.get('kernel', '?')}, boot id {facts.get('boot_id') or '?'} "
               f"(host {host['kernel']}, boot id {host['boot_id']})"),
        _host_pids(facts, same["pid"], seen["pid"]),
        _host_root_fs(facts, host, own),
        _own("own_network", same["net"], "net ns " + seen["net"]),
        _own("own_hostname", same["uts"],
             f"hostname {facts.get('hostname', '?')!r}, uts ns {seen['uts']}"),
        _sys_admin(caps, own or own_user,
                   f"CapEff {facts.get('CapEff', '?')} ({_count(caps)} capabilities{guest}"
                   + (", in a user namespace of its own: over the namespaces it owns, not "
                      "the host" if own_user else "") + f"); user ns {seen['user']}"),
        _seccomp(facts.get("Seccomp", ""), own, guest),
        _check("no_new_privs", _yes(facts["NoNewPrivs"] == "1") if facts.get("NoNewPrivs")
               else "unknown", own or facts.get("NoNewPrivs") == "1",
               f"NoNewPrivs {facts.get('NoNewPrivs') or '?'}{guest}", own),
        _module(facts.get("insmod", ""), own, guest, "sys_module" in cap_names),
        _devices(facts, own, guest, "mknod" in cap_names),
        _check("proc_sys", _yes(facts.get("proc_sys_writable") == "yes"),
               own or facts.get("proc_sys_writable") == "no",
               "/proc/sys/kernel/core_pattern opened for writing: "
               f"{facts.get('proc_sys_writable', '?')}{guest}", own),
        _host_network(facts, reached, same["net"]),
        _host_root(facts, own, same["user"], seen["user"]),
    ]
    return found


def _check(name: str, answer: str, isolates: bool, evidence: str, own: bool = False) -> Check:
    """One check; an unknown answer isolates only where the kernel is the instance's own
    (*own*, for the privilege checks: whatever the answer, it is about that kernel)."""
    return Check(name, *QUESTIONS[name], answer,
                 isolates and (answer != "unknown" or own), evidence)


def _own_kernel(facts: dict[str, str], host: dict[str, str]) -> bool:
    """A boot id other than the host's (or, where the instance's kernel shows none, as
    gVisor's may not, another kernel release and build)."""
    if facts.get("boot_id"):
        return facts["boot_id"] != host["boot_id"]
    return facts.get("kernel") != host["kernel"]


def _host_pids(facts: dict[str, str], same_pid: bool | None, seen: str) -> Check:
    """The marker found, or the host's PID namespace shared; unknown without a /proc."""
    if facts.get("proc_visible") != "yes":
        return _check("host_pids", "unknown", False, "no /proc of its own process: " + seen)
    found = facts.get("host_pid_seen") == "yes"
    answer = "yes" if found or same_pid else "unknown" if same_pid is None else "no"
    return _check("host_pids", answer, answer == "no",
                  f"the host's marker process {'found' if found else 'not found'} in /proc; "
                  f"pid ns {seen}")


def _host_root_fs(facts: dict[str, str], host: dict[str, str], own: bool) -> Check:
    """The host's root mount (its device and root) mounted anywhere in the instance."""
    at = facts.get("host_root_at", "").split()
    evidence = (f"/ is {facts.get('root_mount') or '?'} (the host's / is {host['root_mount']})"
                + (f"; the host's root mounted at {', '.join(at)}" if at and not own else "")
                + f"; {facts.get('mounts', '?')} mounts")
    if own:
        return _check("host_root_fs", "no", True, evidence + " in its own kernel")
    if "host_root_at" not in facts:
        return _check("host_root_fs", "unknown", False, evidence)
    return _check("host_root_fs", _yes(bool(at)), not at, evidence)


def _own(name: str, same: bool | None, evidence: str) -> Check:
    answer = "unknown" if same is None else _yes(not same)
    return _check(name, answer, same is False, evidence)


def _sys_admin(caps: int | None, harmless: bool, evidence: str) -> Check:
    held = caps is not None and bool(caps >> CAP_SYS_ADMIN & 1)
    return _check("sys_admin", "unknown" if caps is None else _yes(held),
                  harmless or not held, evidence, harmless)


def _seccomp(mode: str, own: bool, guest: str) -> Check:
    answer = {"0": "none", "1": "strict", "2": "filter"}.get(mode, "unknown")
    return _check("seccomp", answer, own or answer in ("filter", "strict"),
                  f"Seccomp {mode or '?'}{guest}", own)


def _module(message: str, own: bool, guest: str, cap: bool) -> Check:
    """What the kernel said to a module that is no module: a refusal (capability, seccomp,
    no module support), only signed ones (a signed module would load), or it took the
    request and refused only the format."""
    lowered = message.lower()
    if any(word in lowered for word in SIGNED_ONLY):
        answer = "signed only"
    elif any(word in lowered for word in REFUSED):
        answer = "no"
    elif any(word in lowered for word in TOOK):
        answer = "yes"
    else:
        answer = "unknown"
    return _check("kernel_module", answer, own or answer == "no",
                  f"insmod of a non-module: {message or 'no output'}; CAP_SYS_MODULE "
                  f"{'held' if cap else 'not held'}{guest}", own)


def _devices(facts: dict[str, str], own: bool, guest: str, mknod: bool) -> Check:
    count, _, names = facts.get("devices", "").partition(" ")
    extra = (_int(count, 10) or 0) > 0
    read = facts.get("device_read", "none")
    evidence = (f"{count or '?'} device nodes beyond null, zero, full, random, urandom, tty, "
                f"console, ptmx, pts{': ' + names if names else ''}; a device read: "
                f"{read}; a device node made in:{facts.get('mknod_in', ' ?')} "
                f"(CAP_MKNOD {'held' if mknod else 'not held'}){guest}")
    if "devices" not in facts or "device_read" not in facts:
        return _check("host_devices", "unknown", own, evidence, own)
    exposed = extra or read != "none"
    return _check("host_devices", _yes(exposed), own or not exposed, evidence)


def _host_network(facts: dict[str, str], reached: bool, same_net: bool | None) -> Check:
    """The token arrived, or the host's network namespace is shared (the listener might
    have missed it); unknown when the probe had no nc to try."""
    nc = facts.get("nc", "")
    evidence = ("the probe's token " + ("arrived at" if reached else "did not reach")
                + " the host's listener on 127.0.0.1" + (f" (nc: {nc})" if nc else ""))
    if reached or same_net:
        return _check("host_network", "yes", False, evidence)
    if "not found" in nc or "applet" in nc:
        return _check("host_network", "unknown", False, evidence)
    return _check("host_network", "no", True, evidence)


def _host_root(facts: dict[str, str], own: bool, same_user: bool | None, seen: str) -> Check:
    """uid 0 mapped to the host's uid 0 (in any user namespace: it owns the host's root
    files); with no uid_map to read on the host's kernel, uid 0 is the host's."""
    uid_map = facts.get("uid_map", "").split()
    evidence = f"uid {facts.get('uid', '?')}, uid_map {' '.join(uid_map) or '?'}; user ns {seen}"
    if own or facts.get("uid") not in ("0", None):
        return _check("host_root", "no", True, evidence + (" in its own kernel" if own else ""))
    if "uid" not in facts:
        return _check("host_root", "unknown", False, evidence)
    host_uid0 = uid_map[:2] == ["0", "0"] or (not uid_map and same_user is not False)
    return _check("host_root", _yes(host_uid0), not host_uid0, evidence)


def _int(text: str, base: int) -> int | None:
    try:
        return int(text, base)
    except ValueError:
        return None


def _count(caps: int | None) -> str:
    return "?" if caps is None else str(bin(caps).count("1"))


def _yes(value: bool) -> str:
    return "yes" if value else "no"
