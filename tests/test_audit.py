"""The isolation audit (bench/audit): its probe run for real in every backend of the shared
harness run and in the VM's, a weakened container it must catch, run by vmvc-runtime and
its peers alike, and the judgement's rules beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pyperf
import pytest

from bench.audit import CHECKS, PROBE, HostMarks, host_facts, judge, parse_probe
from bench.audit.host import MARKER
from tests.conftest import CONTAINERS
from tests.oci_runtime import PEERS, OciRuntime, make_config, new_id, write_bundle

NAMES = [name for name, _, _ in CHECKS]
CONFINED = ["builtin", "builtin-cli", "runc", "crun", "docker", "podman"]  # the runtimes and
# engines: namespaces, capabilities and seccomp on the host's kernel


def audits(run_dir: Path) -> dict[str, dict[str, dict]]:
    """Backend → check name → check, from a run's isolation benchmarks."""
    found = {}
    for benchmark in pyperf.BenchmarkSuite.load(str(run_dir / "results.json")):
        metric, _, backend = benchmark.get_name().split(":")
        if metric == "isolation":
            checks = json.loads(benchmark.get_runs()[-1].get_metadata()["vmvc_audit"])
            assert [c["name"] for c in checks] == NAMES
            assert benchmark.get_values() == (float(sum(c["isolates"] for c in checks)),)
            found[backend] = {c["name"]: c for c in checks}
    return found


def test_every_backend_of_the_shared_run_is_audited(container_run: Path) -> None:
    found = audits(container_run)
    assert set(found) == set(CONTAINERS)
    bare = found["bare"]
    assert bare["host_pids"]["answer"] == "yes" and not bare["host_pids"]["isolates"]
    assert bare["host_network"]["answer"] == "yes"  # its token reached the host's listener
    assert bare["own_network"]["answer"] == "no" and bare["own_kernel"]["answer"] == "no"
    assert bare["seccomp"]["answer"] == "none"
    for backend in CONFINED:
        checks = found[backend]
        assert checks["own_kernel"]["answer"] == "no", backend  # the host's kernel, shared
        for name in ("host_pids", "host_root_fs", "host_network", "host_devices", "proc_sys",
                     "kernel_module", "sys_admin"):
            assert checks[name]["answer"] == "no", (backend, checks[name])
        assert checks["own_network"]["answer"] == "yes", backend
        assert checks["seccomp"]["answer"] == "filter", backend
        assert sum(c["isolates"] for c in checks.values()) > \
            sum(c["isolates"] for c in bare.values()), backend
    # the Sentry: a kernel of its own in user space
    assert found["gvisor"]["own_kernel"]["answer"] == "yes"
    assert all(c["isolates"] for c in found["gvisor"].values())
    lxc = found["lxc"]  # libvirt's defaults: its own namespaces, no seccomp, CAP_SYS_ADMIN
    assert lxc["own_kernel"]["answer"] == "no" and lxc["host_pids"]["answer"] == "no"
    assert lxc["own_network"]["answer"] == "yes"
    assert lxc["sys_admin"]["answer"] == "yes" and lxc["seccomp"]["answer"] == "none"


def test_the_vm_runs_its_own_kernel_and_passes_every_check(vm_run) -> None:
    vm = audits(vm_run.out)["vm"]
    assert vm["own_kernel"]["answer"] == "yes"
    assert all(check["isolates"] for check in vm.values()), \
        [c for c in vm.values() if not c["isolates"]]
    # root of its own kernel: it may do what the containers may not, to that kernel only
    assert vm["sys_admin"]["answer"] == "yes" and vm["seccomp"]["answer"] == "none"


@pytest.mark.parametrize("runtime", PEERS)
def test_a_container_sharing_the_hosts_namespaces_is_caught(runtime: str, busybox_rootfs: Path,
                                                            tmp_path: Path) -> None:
    """The probe must say no where a container is weak: host PID and network namespaces,
    CAP_SYS_ADMIN and CAP_SYSLOG, no seccomp, every device allowed (it makes a node of kmsg and
    reads the kernel log through it: this host refuses a disk to root itself). The same
    answers whichever runtime ran it."""
    with HostMarks() as marks:
        config = make_config(busybox_rootfs, ["/bin/sh", "-c", PROBE, "probe", marks.token,
                                              str(marks.port), host_facts()["root_mount"]])
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                         if n["type"] not in ("pid", "network")]
        config["linux"].pop("seccomp", None)
        for kind in ("bounding", "effective", "permitted"):
            held = config["process"]["capabilities"][kind]
            held += [c for c in ("CAP_SYS_ADMIN", "CAP_MKNOD", "CAP_SYSLOG") if c not in held]
        config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["nosuid"]})  # device nodes work there
        config["process"]["noNewPrivileges"] = False
        config["linux"].setdefault("resources", {})["devices"] = [{"allow": True,
                                                                    "access": "rwm"}]
        oci = OciRuntime(tmp_path / "state", PEERS[runtime])
        proc = oci("run", "--bundle", str(write_bundle(tmp_path / "b", config)), new_id())
        reached = marks.reached
    assert proc.returncode == 0, proc.stderr
    checks = {c.name: c for c in judge(parse_probe(proc.stdout), host_facts(), reached)}
    exposed = {name for name, check in checks.items() if not check.isolates}
    assert {"host_pids", "own_network", "host_network", "sys_admin", "seccomp",
            "no_new_privs", "host_root", "host_devices"} <= exposed, checks
    assert "made with mknod" in checks["host_devices"].evidence
    assert {"own_hostname", "host_root_fs", "proc_sys"}.isdisjoint(exposed)
    assert "found" in checks["host_pids"].evidence


def test_the_marks_go_with_the_probe() -> None:
    with HostMarks() as marks:
        port, token = marks.port, marks.token
        assert any(MARKER + token in _cmdline(p) for p in Path("/proc").glob("[0-9]*"))
    assert not any(MARKER + token in _cmdline(p) for p in Path("/proc").glob("[0-9]*"))
    assert f":{port:04X} " not in Path("/proc/net/tcp").read_text()


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


# -- the judgement's rules, on facts written out ----------------------------------------
HOST = {"boot_id": "b-host", "kernel": "6.1.0 #1", "hostname": "h", "root_mount": "254:0 /",
        **{f"ns_{ns}": f"{ns}:[1]" for ns in ("pid", "mnt", "net", "uts", "user")}}


def facts(**changes: str) -> dict[str, str]:
    base = {**HOST, "uid": "0", "uid_map": "0 0 4294967295", "CapEff": "000001ffffffffff",
            "Seccomp": "0", "NoNewPrivs": "0", "proc_visible": "yes", "host_pid_seen": "yes",
            "mounts": "30", "host_root_at": "/", "device_read": "/dev/sda", "mknod_in": " /tmp",
            "devices": "3 /dev/sda /dev/mem /dev/kmsg", "proc_sys_writable": "yes",
            "insmod": "insmod: can't insert '/bin/busybox': invalid module format",
            "done": "yes"}
    return {**base, **changes}


def test_a_process_of_the_host_fails_every_check() -> None:
    checks = judge(facts(), HOST, reached=True)
    assert [c.name for c in checks] == NAMES
    assert not any(c.isolates for c in checks), [c for c in checks if c.isolates]


def test_an_own_kernel_makes_the_privilege_checks_its_own() -> None:
    """Namespace ids of another kernel are not compared with the host's (a guest's initial
    namespaces have the same numbers as the host's)."""
    checks = {c.name: c for c in judge(facts(boot_id="b-guest", host_pid_seen="no"), HOST,
                                       reached=False)}
    assert all(c.isolates for c in checks.values()), [c for c in checks.values()
                                                      if not c.isolates]
    assert checks["kernel_module"].answer == "yes"  # into its own kernel
    assert "in its own kernel" in checks["kernel_module"].evidence


def test_without_a_boot_id_the_kernel_build_decides() -> None:
    """gVisor's Sentry may show no boot id: its kernel release and build then say it."""
    assert judge(facts(boot_id="", kernel="4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016"), HOST,
                 False)[0].answer == "yes"
    assert judge(facts(boot_id=""), HOST, False)[0].answer == "no"


def test_root_in_a_user_namespace_of_its_own() -> None:
    """Mapped to an unprivileged host uid: CAP_SYS_ADMIN over its own namespaces only; mapped
    to the host's uid 0, it still owns the host's root files."""
    mapped = {c.name: c for c in judge(facts(ns_user="user:[9]", uid_map="0 100000 65536"),
                                       HOST, False)}
    assert mapped["sys_admin"].isolates and mapped["host_root"].isolates
    to_root = {c.name: c for c in judge(facts(ns_user="user:[9]", uid_map="0 0 1"), HOST,
                                        False)}
    assert to_root["sys_admin"].isolates and not to_root["host_root"].isolates


@pytest.mark.parametrize(("message", "answer"), [
    ("insmod: can't insert '/bin/busybox': Operation not permitted", "no"),
    ("insmod: can't insert '/bin/busybox': kernel does not support requested operation", "no"),
    ("insmod: can't insert '/bin/busybox': Key was rejected by service", "signed only"),
    ("insmod: can't insert '/bin/busybox': invalid module format", "yes"),
    ("sh: busybox: not found", "unknown"),
])
def test_a_module_load_is_judged_by_what_the_kernel_said(message: str, answer: str) -> None:
    check = {c.name: c for c in judge(facts(insmod=message), HOST, False)}["kernel_module"]
    assert check.answer == answer
    assert check.isolates == (answer == "no")


def test_what_the_probe_could_not_read_is_unknown_and_never_isolates() -> None:
    unread = {c.name: c for c in judge(
        {k: v for k, v in facts(host_pid_seen="no", proc_visible="no", uid_map="",
                                nc="sh: busybox: not found").items()
         if not k.startswith("ns_")}, HOST, reached=False)}
    for name in ("host_pids", "own_network", "own_hostname", "host_network"):
        assert unread[name].answer == "unknown" and not unread[name].isolates, unread[name]
    assert unread["host_root"].answer == "yes"  # uid 0, no uid_map: the host's own root
    assert not unread["sys_admin"].isolates  # full caps in an unknown user namespace


def test_an_unknown_about_its_own_kernel_still_isolates() -> None:
    """gVisor's Sentry shows no NoNewPrivs line: whatever it is, it is about its own kernel."""
    checks = {c.name: c for c in judge({k: v for k, v in facts(
        boot_id="b-sentry", host_pid_seen="no").items() if k != "NoNewPrivs"}, HOST, False)}
    assert checks["no_new_privs"].answer == "unknown" and checks["no_new_privs"].isolates


def test_a_shared_namespace_decides_even_when_a_mark_is_missed() -> None:
    """The marker not found or the token not arriving proves nothing when the instance is
    in the host's PID or network namespace."""
    checks = {c.name: c for c in judge(facts(host_pid_seen="no"), HOST, reached=False)}
    assert checks["host_pids"].answer == "yes" and checks["host_network"].answer == "yes"


def test_the_hosts_root_mounted_elsewhere_is_caught() -> None:
    """A container with the host's / bound at /host: its own / is not the host's, but the
    host's root file system is there."""
    checks = {c.name: c for c in judge(facts(root_mount="0:41 /", host_root_at="/host"),
                                       HOST, False)}
    assert checks["host_root_fs"].answer == "yes" and "/host" in checks["host_root_fs"].evidence
    clean = {c.name: c for c in judge(facts(host_root_at=""), HOST, False)}
    assert clean["host_root_fs"].answer == "no"


def test_a_probe_that_did_not_finish_is_an_error() -> None:
    with pytest.raises(ValueError, match="did not finish"):
        judge(parse_probe("boot_id=x\nuid=0\n"), HOST, False)
