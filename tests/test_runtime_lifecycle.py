"""runc's lifecycle contract: create/start/state/kill/delete, their states and errors; bad
bundles refused in one line with nothing left behind."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.oci_runtime import BUILTIN, RUNTIME, OciRuntime, make_config, new_id, write_bundle


@pytest.fixture
def oci(tmp_path: Path) -> OciRuntime:
    return OciRuntime(tmp_path / "state")


def status(oci: OciRuntime, cid: str) -> str:
    proc = oci("state", cid)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["status"]


def one_line_error(proc, *words: str) -> None:
    assert proc.returncode != 0
    if BUILTIN:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vmvc-runtime: "), proc.stderr
        for word in words:
            assert word in lines[0], lines[0]


def test_lifecycle_states(oci: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", make_config(busybox_rootfs, ["/bin/sleep", "60"]))
    cid = new_id()
    pid_file = tmp_path / "pid"
    assert oci("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid).returncode == 0
    state = json.loads(oci("state", cid).stdout)
    assert state["status"] == "created" and state["pid"] == int(pid_file.read_text())
    assert state["id"] == cid and state["ociVersion"]
    assert Path(f"/proc/{state['pid']}").exists()
    assert cid in oci("list", "-q").stdout.split()
    assert oci("start", cid).returncode == 0
    assert status(oci, cid) == "running"
    one_line_error(oci("start", cid), cid, "running")
    one_line_error(oci("delete", cid), cid, "running")
    assert oci("kill", cid, "KILL").returncode == 0
    deadline = time.monotonic() + 10
    while status(oci, cid) != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert status(oci, cid) == "stopped"
    assert oci("delete", cid).returncode == 0
    one_line_error(oci("state", cid), cid, "does not exist")
    assert cid not in oci("list", "-q").stdout.split()


def test_delete_force_kills_a_running_container(oci: OciRuntime, busybox_rootfs: Path,
                                                tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", make_config(busybox_rootfs, ["/bin/sleep", "60"]))
    cid = new_id()
    assert oci("run", "-d", "--bundle", str(bundle), cid).returncode == 0
    pid = json.loads(oci("state", cid).stdout)["pid"]
    assert oci("delete", "--force", cid).returncode == 0
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_run_returns_the_exit_status(oci: OciRuntime, busybox_rootfs: Path,
                                     tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", make_config(busybox_rootfs, ["/bin/sh", "-c", "exit 7"]))
    assert oci("run", "--bundle", str(bundle), new_id()).returncode == 7


def test_exec_in_a_running_container(oci: OciRuntime, busybox_rootfs: Path,
                                     tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", make_config(busybox_rootfs, ["/bin/sleep", "60"]))
    cid = new_id()
    assert oci("run", "-d", "--bundle", str(bundle), cid).returncode == 0
    try:
        proc = oci("exec", cid, "/bin/sh", "-c", "hostname; cat /proc/1/cmdline; exit 3")
        assert proc.returncode == 3
        assert proc.stdout.startswith("vmvc\n/bin/sleep")
        status_lines = oci("exec", cid, "/bin/grep", "-E", "Seccomp:|NoNewPrivs:",
                           "/proc/self/status").stdout
        assert "Seccomp:\t2" in status_lines
        if Path(RUNTIME).name != "crun":  # crun's exec does not take NNP from the config
            assert "NoNewPrivs:\t1" in status_lines
    finally:
        oci("delete", "--force", cid)


def _left_behind(tmp_path: Path, cid: str) -> list[str]:
    leftovers = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/*{cid}*")]
    leftovers += [str(p) for p in (tmp_path / "state").glob(f"{cid}*")]
    mounts = Path("/proc/self/mountinfo").read_text()
    leftovers += [line for line in mounts.splitlines() if cid in line or str(tmp_path) in line]
    return leftovers


def _set(path: str, value: object):
    """A change to a config: set the value at a dotted path."""
    def change(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return change


BAD = {
    "malformed-json": (None, "malformed JSON"),
    "missing-rootfs": (_set("root.path", "/nonexistent/rootfs"), "root.path"),
    "unknown-namespace": (_set("linux.namespaces", [{"type": "pid"}, {"type": "bogus"}]),
                          "unknown namespace type 'bogus'"),
    "negative-memory": (_set("linux.resources.memory", {"limit": -5}),
                        "linux.resources.memory.limit"),
    "unknown-user": (_set("process.user.username", "nosuchuser"), "nosuchuser"),
    "unsupported-security-field": (_set("process.apparmorProfile", "docker-default"),
                                   "process.apparmorProfile"),
    "unknown-capability": (_set("process.capabilities.bounding", ["CAP_BOGUS"]), "CAP_BOGUS"),
    "no-mount-namespace": (_set("linux.namespaces", [{"type": "pid"}]), "mount namespace"),
    "host-sysctl": (_set("linux.sysctl", {"kernel.core_pattern": "|/tmp/x"}),
                    "kernel.core_pattern"),
    "unknown-propagation": (_set("linux.rootfsPropagation", "rbogus"), "rbogus"),
    "bind-option": (_set("mounts", [{"destination": "/mnt", "type": "bind", "source": "/tmp",
                                     "options": ["rbind", "idmap"]}]), "idmap"),
}


@pytest.mark.skipif(not BUILTIN, reason="vmvc-runtime's own messages")
@pytest.mark.parametrize("case", BAD)
def test_bad_bundle_is_one_line_and_leaves_nothing(case: str, oci: OciRuntime,
                                                   busybox_rootfs: Path, tmp_path: Path) -> None:
    change, words = BAD[case]
    bundle = tmp_path / "b"
    if change is None:
        bundle.mkdir()
        (bundle / "config.json").write_text("{ not json")
    else:
        config = make_config(busybox_rootfs, ["/bin/true"])
        change(config)
        write_bundle(bundle, config)
    cid = new_id()
    proc = oci("run", "--bundle", str(bundle), cid)
    one_line_error(proc, words)
    assert _left_behind(tmp_path, cid) == []


@pytest.mark.skipif(not BUILTIN, reason="vmvc-runtime's own spec")
def test_spec_writes_the_default_config(oci: OciRuntime, tmp_path: Path) -> None:
    from runtime.config import parse_config

    assert oci("spec", "--bundle", str(tmp_path)).returncode == 0
    config = json.loads((tmp_path / "config.json").read_text())
    spec = parse_config(config)
    assert spec.no_new_privileges and spec.root_readonly
    assert spec.capabilities["bounding"] == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    seccomp = config["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {name for rule in seccomp["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
               for name in rule["names"]}
    assert {"read", "write", "execve", "clone"} <= allowed
    assert "mount" not in allowed and "kexec_load" not in allowed  # CAP_SYS_ADMIN/BOOT rules out
    one_line_error(oci("spec", "--bundle", str(tmp_path)), "already exists")


@pytest.mark.skipif(not BUILTIN, reason="process.user.username is vmvc-runtime's")
def test_username_holds_for_exec_too(oci: OciRuntime, busybox_rootfs: Path,
                                     tmp_path: Path) -> None:
    config = make_config(busybox_rootfs, ["/bin/sleep", "60"])
    config["process"]["user"] = {"uid": 0, "gid": 0, "username": "nobody"}
    cid = new_id()
    assert oci("run", "-d", "--bundle", str(write_bundle(tmp_path / "b", config)),
               cid).returncode == 0
    try:
        pid = json.loads(oci("state", cid).stdout)["pid"]
        uid_line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if line.startswith("Uid:"))
        assert uid_line.split()[1] == "65534"
        assert oci("exec", cid, "id", "-u").stdout.strip() == "65534"
    finally:
        oci("delete", "--force", cid)
