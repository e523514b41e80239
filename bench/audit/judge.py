"""The probe's facts, judged against the host's: one answer per check, whether that answer
keeps the instance apart from the host, and the evidence it rests on.

A namespace id means something only on the kernel that issued it (a VM's guest numbers its
own), so the namespace checks compare ids only when the instance runs on the host's kernel.
The checks about privilege (capabilities, seccomp, no_new_privs, modules, devices,
/proc/sys) are answered for whatever kernel the instance runs on; they isolate the host
when that kernel is the instance's own, or when the answer itself is the safe one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# (name, a column's short header, the question it answers)
CHECKS: tuple[tuple[str, str, str], ...] = (
    ("own_kernel", "own kernel", "runs on a kernel of its own"),
    ("host_pids", "sees host PIDs", "sees the host's processes"),
    ("host_root_fs", "host's /", "its / is the host's root file system"),
    ("own_network", "own network", "has a network stack of its own"),
    ("own_hostname", "own hostname", "has a hostname of its own"),
    ("sys_admin", "CAP_SYS_ADMIN", "holds CAP_SYS_ADMIN"),
    ("seccomp", "seccomp", "its system calls pass a seccomp filter"),
    ("no_new_privs", "no_new_privs", "runs with no_new_privs"),
    ("kernel_module", "loads modules", "may load a kernel module"),
    ("host_devices", "extra devices", "sees device nodes beyond the default set"),
    ("proc_sys", "/proc/sys writable", "may open /proc/sys/kernel/core_pattern for writing"),
    ("host_network", "reaches host's lo", "reaches a listener on the host's 127.0.0.1"),
    ("host_root", "host's root", "runs as the host's uid 0"),
)
QUESTIONS = {name: (short, question) for name, short, question in CHECKS}
CAP_SYS_ADMIN = 21
REFUSED = ("not permitted", "does not support", "not implemented", "rejected", "denied")
TOOK = ("invalid module format", "exec format", "invalid argument", "invalid parameters",
        "file exists")


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
    same_ns = {ns: not own and facts.get(f"ns_{ns}") == host[f"ns_{ns}"]
               for ns in ("pid", "mnt", "net", "uts", "user")}
    ns_evidence = {ns: f"{facts.get(f'ns_{ns}') or 'unreadable'} (host {host[f'ns_{ns}']})"
                   for ns in same_ns}
    guest = " in its own kernel" if own else ""
    caps = _int(facts.get("CapEff", ""), 16)
    sys_admin = caps is not None and bool(caps >> CAP_SYS_ADMIN & 1)
    seccomp = {"0": "none", "1": "strict", "2": "filter"}.get(facts.get("Seccomp", ""),
                                                               "unknown")
    nnp = facts.get("NoNewPrivs", "")
    module = _module_answer(facts.get("insmod", ""))
    device_count, _, device_names = facts.get("devices", "").partition(" ")
    devices = (_int(device_count, 10) or 0) > 0
    writable = facts.get("proc_sys_writable") == "yes"
    host_root_fs = not own and facts.get("root_mount") == host["root_mount"]
    # uid 0 mapped to the host's uid 0: owns the host's root files, in any user namespace
    host_uid0 = not own and facts.get("uid") == "0" and \
        facts.get("uid_map", "").split()[:2] == ["0", "0"]
    found = [
        _check("own_kernel", _yes(own), own,
              f"kernel {facts.get('kernel', '?')}, boot id {facts.get('boot_id') or '?'} "
              f"(host {host['kernel']}, boot id {host['boot_id']})"),
        _check("host_pids", _yes(facts.get("host_pid_seen") == "yes"),
              facts.get("host_pid_seen") == "no",
              "the host's marker process " + ("found" if facts.get("host_pid_seen") == "yes"
                                             else "not found") + f" in /proc; pid ns "
              f"{ns_evidence['pid']}"),
        _check("host_root_fs", _yes(host_root_fs), not host_root_fs,
              f"/ is device and root {facts.get('root_mount') or '?'} (host's "
              f"{host['root_mount']}); mount ns {ns_evidence['mnt']}, "
              f"{facts.get('mounts', '?')} mounts"),
        _check("own_network", _yes(not same_ns["net"]), not same_ns["net"],
              f"net ns {ns_evidence['net']}"),
        _check("own_hostname", _yes(not same_ns["uts"]), not same_ns["uts"],
              f"hostname {facts.get('hostname', '?')!r}, uts ns {ns_evidence['uts']}"),
        _check("sys_admin", "unknown" if caps is None else _yes(sys_admin),
              own or not same_ns["user"] or (caps is not None and not sys_admin),
              f"CapEff {facts.get('CapEff', '?')} ({_count(caps)} capabilities{guest}"
              + ("" if own or same_ns["user"] else ", in a user namespace of its own: over "
                 "the namespaces it owns, not the host") + f"); user ns {ns_evidence['user']}"),
        _check("seccomp", seccomp, own or seccomp in ("filter", "strict"),
              f"Seccomp {facts.get('Seccomp', '?')}{guest}"),
        _check("no_new_privs", _yes(nnp == "1") if nnp else "unknown", own or nnp == "1",
              f"NoNewPrivs {nnp or '?'}{guest}"),
        _check("kernel_module", module, own or module == "no",
              f"insmod of a non-module: {facts.get('insmod') or 'no output'}{guest}"),
        _check("host_devices", _yes(devices), own or not devices,
              f"{device_count or '?'} device nodes beyond null, zero, full, random, urandom, "
              f"tty, console, ptmx, pts{': ' + device_names if device_names else ''}{guest}"),
        _check("proc_sys", _yes(writable), own or not writable,
              f"/proc/sys/kernel/core_pattern opened for writing: {_yes(writable)}{guest}"),
        _check("host_network", _yes(reached), not reached,
              "the probe's token " + ("arrived at" if reached else "did not reach")
              + " the host's listener on 127.0.0.1"
              + (f" (nc: {facts['nc']})" if facts.get("nc") else "")),
        _check("host_root", _yes(host_uid0), not host_uid0,
              f"uid {facts.get('uid', '?')}, uid_map {facts.get('uid_map') or '?'}; user ns "
              f"{ns_evidence['user']}"),
    ]
    return found


def _check(name: str, answer: str, isolates: bool, evidence: str) -> Check:
    return Check(name, *QUESTIONS[name], answer, isolates, evidence)


def _own_kernel(facts: dict[str, str], host: dict[str, str]) -> bool:
    """A boot id other than the host's (or, where the instance's kernel shows none, as
    gVisor's may not, another kernel release and build)."""
    if facts.get("boot_id"):
        return facts["boot_id"] != host["boot_id"]
    return facts.get("kernel") != host["kernel"]


def _module_answer(message: str) -> str:
    lowered = message.lower()
    if any(word in lowered for word in REFUSED):
        return "no"
    if any(word in lowered for word in TOOK):
        return "yes"
    return "unknown"


def _int(text: str, base: int) -> int | None:
    try:
        return int(text, base)
    except ValueError:
        return None


def _count(caps: int | None) -> str:
    return "?" if caps is None else str(bin(caps).count("1"))


def _yes(value: bool) -> str:
    return "yes" if value else "no"
