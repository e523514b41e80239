"""Configs that runc accepts (issue 14): each case is a change to the runtime's own default
config that an engine or a conformance suite sends, run for real through vmvc-runtime, runc
and crun in the same test; every runtime must give the same answer (the container's output,
or its exit status). Cases that runc refuses too are not here: those stay refused."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.oci_runtime import OciRuntime, make_config
from tests.security import facts, run_bundle

Change = Callable[[dict], None]

def unknown_properties(config: dict) -> None:
    """Properties the spec does not define, at the top and deep inside: MUST NOT error."""
    config["vmvcFuture"] = {"anything": [1, 2]}
    config["process"]["vmvcFutureProcess"] = True
    config["linux"]["resources"]["vmvcFutureResource"] = 1


def kernel_memory(config: dict) -> None:
    """Deprecated and ignored by the kernel: runc accepts and ignores them."""
    config["linux"]["resources"]["memory"] = {"kernel": 64 << 20, "kernelTCP": 16 << 20}


def docker_zeros(config: dict) -> None:
    """What Docker 20.10 always sends: a zero block-I/O weight and zero CPU shares."""
    config["linux"]["resources"]["blockIO"] = {"weight": 0}
    config["linux"]["resources"]["cpu"] = {"shares": 0}


def bind_with_data(config: dict) -> None:
    """A bind mount with file-system data options (a tmpfs's mode and size): runc ignores
    data on a bind."""
    config["mounts"].append({"destination": "/mnt", "type": "bind", "source": "/tmp",
                             "options": ["rbind", "mode=755", "size=1k"]})


def device_mode(config: dict) -> None:
    """A device node with its own fileMode and owner."""
    config["linux"]["devices"] = [{"path": "/dev/vmvcnull", "type": "c", "major": 1,
                                   "minor": 3, "fileMode": 0o640, "uid": 0, "gid": 0}]


def tmpfs_copy_up(config: dict) -> None:
    """podman --read-only: a tmpfs over a directory of the image, filled with what was
    there (runc's tmpcopyup extension)."""
    config["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "nodev", "mode=755", "tmpcopyup"]})


def no_cgroup_namespace(config: dict) -> None:
    """podman on a v1 host: no cgroup namespace. The container's /sys/fs/cgroup shows its
    own cgroup (its limits), not the host's hierarchy."""
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                     if n["type"] != "cgroup"]
    config["linux"]["resources"]["pids"] = {"limit": 42}
    config["linux"]["resources"]["memory"] = {"limit": 48 << 20}


OWN_LIMITS = ("cat_first() { for f; do [ -r $f ] && { cat $f; return; }; done; }; "
              "echo pids=$(cat_first /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max); "
              "echo memory=$(cat_first /sys/fs/cgroup/memory/memory.limit_in_bytes "
              "/sys/fs/cgroup/memory.max)")

def hugepage_limits(config: dict) -> None:
    """A limit on 2 MiB huge pages (the hugetlb controller)."""
    config["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 4 << 20}]


CASES: dict[str, tuple[Change, list[str], dict[str, str] | int]] = {
    "hugepageLimits": (hugepage_limits, ["sh", "-c", "cat_first() { for f; do [ -r $f ] && "
                                         "{ cat $f; return; }; done; }; echo limit=$(cat_first "
                                         "/sys/fs/cgroup/hugetlb/hugetlb.2MB.limit_in_bytes "
                                         "/sys/fs/cgroup/hugetlb.2MB.max)"],
                       {"limit": str(4 << 20)}),
    "no cgroup namespace": (no_cgroup_namespace, ["sh", "-c", OWN_LIMITS],
                            {"pids": "42", "memory": str(48 << 20)}),
    "unknown properties": (unknown_properties, ["echo", "ran=yes"], {"ran": "yes"}),
    "memory.kernel and kernelTCP": (kernel_memory, ["echo", "ran=yes"], {"ran": "yes"}),
    "blockIO weight 0, cpu.shares 0": (docker_zeros, ["echo", "ran=yes"], {"ran": "yes"}),
    "bind mount with data options": (bind_with_data,
                                     ["sh", "-c", "ls -d /mnt >/dev/null && echo ran=yes"],
                                     {"ran": "yes"}),
    "device fileMode": (device_mode, ["stat", "-c", "mode=%a", "/dev/vmvcnull"],
                        {"mode": "640"}),
    "tmpfs with tmpcopyup": (tmpfs_copy_up,
                             ["sh", "-c", "echo passwd=$(head -c 4 /etc/passwd); "
                              "touch /etc/new && echo wrote=yes; stat -c mode=%a /etc"],
                             {"passwd": "root", "wrote": "yes", "mode": "755"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_what_runc_accepts_runs_alike(case: str, peer_runtime: OciRuntime,
                                      busybox_rootfs: Path, tmp_path: Path) -> None:
    change, args, expected = CASES[case]
    config = make_config(busybox_rootfs, args)
    config["root"]["readonly"] = True
    change(config)
    proc = run_bundle(peer_runtime, copy.deepcopy(config), tmp_path / "bundle")
    assert proc.returncode == 0, proc.stderr
    assert facts(proc.stdout) == expected, proc.stdout + proc.stderr


def one_personality_rule(config: dict) -> None:
    """Docker's profile with its personality rules made into the one rule runtime-tools'
    default profile has: three conditions on argument 0 (0, 8 or 0xffffffff)."""
    syscalls = config["linux"]["seccomp"]["syscalls"]
    syscalls[:] = [r for r in syscalls if "personality" not in r["names"]]
    syscalls.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}
                              for v in (0, 8, 0xffffffff)]})


def test_repeated_conditions_on_one_argument_start(peer_runtime: OciRuntime,
                                                   busybox_rootfs: Path, tmp_path: Path) -> None:
    """libseccomp refuses two conditions on one argument in a rule; runc adds a rule per
    condition, and a container that calls personality(8) (linux32) runs."""
    config = make_config(busybox_rootfs, ["linux32", "sh", "-c", "echo arch=$(uname -m)"])
    one_personality_rule(config)
    proc = run_bundle(peer_runtime, config, tmp_path / "bundle")
    assert proc.returncode == 0, proc.stderr
    assert facts(proc.stdout) == {"arch": "i686"}, proc.stdout + proc.stderr


CHILD = """
import ctypes, os, sys
from runtime.linux import Linux
bpf = sys.stdin.buffer.read()
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
Linux().seccomp_load(bpf)
answers = []
for value in (0xffffffff, 8, 0, 2):
    result = libc.personality(ctypes.c_ulong(value))  # unsigned long, as the kernel reads it
    answers.append(str(result >= 0 or ctypes.get_errno()))
libc.personality(0)
os.write(1, " ".join(answers).encode())
"""


def test_the_compiled_rule_lets_each_condition_through_and_nothing_else() -> None:
    """The program itself, loaded in a child: personality(0xffffffff), (8) and (0) pass,
    personality(2) gets the profile's default (EPERM)."""
    import subprocess
    import sys

    from runtime.seccomp import compile_bpf
    from runtime.spec import default_spec

    config = default_spec(["true"])
    one_personality_rule(config)
    bpf = compile_bpf(config["linux"]["seccomp"])
    child = subprocess.run([sys.executable, "-c", CHILD], input=bpf, capture_output=True,
                           timeout=30, check=False)
    assert child.returncode == 0, child.stderr
    assert child.stdout.decode().split() == ["True", "True", "True", "1"]


def test_runc_specs_own_default_config_starts(peer_runtime: OciRuntime, busybox_rootfs: Path,
                                              tmp_path: Path) -> None:
    """`runc spec` writes ambient capabilities without an inheritable set; the kernel will
    not raise them, and every runtime warns and starts the container without them. (Its
    terminal=true is switched off: a pseudo-terminal is the console-socket's business.)"""
    import json
    import shutil
    import subprocess

    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (make setup installs it)")
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(spec_dir)], check=True, timeout=30)
    config = json.loads((spec_dir / "config.json").read_text())
    assert config["process"]["capabilities"]["ambient"] and \
        "inheritable" not in config["process"]["capabilities"]
    config["root"]["path"] = str(busybox_rootfs)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "echo amb=$(grep CapAmb /proc/self/status | "
                                 "cut -f2) eff=$(grep CapEff /proc/self/status | cut -f2)"]
    proc = run_bundle(peer_runtime, config, tmp_path / "bundle")
    assert proc.returncode == 0, proc.stderr
    # CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE effective; none ambient
    assert facts(proc.stdout.replace(" eff=", "\neff=")) == \
        {"amb": "0000000000000000", "eff": "0000000020000420"}, proc.stdout


def test_exec_with_a_process_file_as_engines_call_it(peer_runtime: OciRuntime,
                                                     busybox_rootfs: Path,
                                                     tmp_path: Path) -> None:
    """containerd and conmon write the process to a file and call `exec --process FILE
    [--detach --pid-file F] ID`: its env is the whole environment, its user and cwd its own."""
    import json

    from tests.oci_runtime import new_id, write_bundle

    bundle = write_bundle(tmp_path / "bundle", make_config(busybox_rootfs, ["sleep", "60"]))
    process = {"args": ["sh", "-c", "echo uid=$(id -u) foo=$FOO home=${HOME:-none} cwd=$PWD"],
               "env": ["FOO=bar", "PATH=/bin:/usr/bin"], "cwd": "/tmp",
               "user": {"uid": 1000, "gid": 1000}, "terminal": False}
    (tmp_path / "process.json").write_text(json.dumps(process))
    cid = new_id()
    try:
        started = peer_runtime("run", "--detach", "--bundle", str(bundle), cid)
        assert started.returncode == 0, started.stderr
        ran = peer_runtime("exec", "--process", str(tmp_path / "process.json"), cid)
        assert ran.returncode == 0, ran.stderr
        # HOME: runc (the reference) and vmvc-runtime set it from /etc/passwd, else "/";
        # crun 1.8 leaves it unset in an exec
        home = "none" if Path(peer_runtime.binary).name == "crun" else "/"
        assert facts(ran.stdout.replace(" ", "\n")) == \
            {"uid": "1000", "foo": "bar", "home": home, "cwd": "/tmp"}, ran.stdout
        pid_file = tmp_path / "exec.pid"
        detached = peer_runtime("exec", "--process", str(tmp_path / "process.json"),
                                "--detach", "--pid-file", str(pid_file), cid)
        assert detached.returncode == 0, detached.stderr
        gone(int(pid_file.read_text()), 5)  # its echo ends at once: gone before the delete
        # (runc's delete -f races an exiting exec: its cgroup busy)
    finally:
        deleted = stop_and_delete(peer_runtime, cid)
    assert deleted.returncode == 0, deleted.stderr
    assert peer_runtime("list", "-q").stdout.split() == []


def stop_and_delete(runtime: OciRuntime, cid: str):
    """SIGKILL, wait (bounded) until the init is gone, then delete. This test process may
    be the init's subreaper (the built-in runtime's library, used by other tests in the
    same session, makes it one): then the dead init stays a zombie until reaped here, and
    runc 1.1.5's `delete --force` waits 10 s for it and gives up ("container init still
    running"), leaving the container and its cgroups."""
    import json

    state = runtime("state", cid)
    pid = json.loads(state.stdout)["pid"] if state.returncode == 0 else 0
    runtime("kill", cid, "KILL")
    if pid:
        gone(pid)
    return runtime("delete", "--force", cid)


def gone(pid: int, seconds: float = 10) -> None:
    """Wait until *pid* has exited, reaping it if it is this process's (bounded)."""
    import os
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:  # not ours: gone once /proc forgets it
            if not Path(f"/proc/{pid}").exists():
                return
        time.sleep(0.01)


def test_a_command_line_it_cannot_parse_is_logged(tmp_path: Path) -> None:
    """Engines show the runtime's --log, not its stderr ("unable to retrieve OCI runtime
    error" otherwise): an unknown option is logged too, in the format asked for."""
    import json
    import subprocess

    from tests.oci_runtime import PEERS

    log = tmp_path / "log.json"
    proc = subprocess.run([PEERS["vmvc-runtime"], "--log", str(log), "--log-format", "json",
                           "exec", "--bogus", "x"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode != 0 and "--bogus" in proc.stderr
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["level"] == "error" and "--bogus" in entry["msg"]


def test_features_and_ps_answer_as_runc_does(peer_runtime: OciRuntime, busybox_rootfs: Path,
                                             tmp_path: Path) -> None:
    """`features` is runc's JSON document; `ps -f json` lists the container's processes (host
    pids), and `ps ID -o pid,args` the rows of ps that are theirs."""
    import json

    from tests.oci_runtime import new_id, write_bundle

    shown = peer_runtime("features")
    if "crun" in peer_runtime.binary and shown.returncode != 0:
        pytest.skip("this crun has no features command")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert {"ociVersionMin", "ociVersionMax", "mountOptions", "linux"} <= set(document)
    assert {"pid", "network", "mount", "user"} <= set(document["linux"]["namespaces"])
    assert "CAP_SYS_ADMIN" in document["linux"]["capabilities"]
    assert "SCMP_ACT_ERRNO" in document["linux"]["seccomp"]["actions"]
    bundle = write_bundle(tmp_path / "bundle", make_config(busybox_rootfs, ["sleep", "60"]))
    cid = new_id()
    try:
        assert peer_runtime("run", "--detach", "--bundle", str(bundle), cid).returncode == 0
        state = json.loads(peer_runtime("state", cid).stdout)
        listed = peer_runtime("ps", "--format", "json", cid)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == [state["pid"]]
        table = peer_runtime("ps", cid, "-o", "pid,args")
        assert table.returncode == 0, table.stderr
        header, *rows = table.stdout.splitlines()
        assert header.split() == ["PID", "COMMAND"]
        assert [row.split()[:2] for row in rows] == [[str(state["pid"]), "sleep"]]
    finally:
        stop_and_delete(peer_runtime, cid)


def test_pause_freezes_every_process_and_resume_thaws_them(peer_runtime: OciRuntime,
                                                          busybox_rootfs: Path,
                                                          tmp_path: Path) -> None:
    """pause/resume through the freezer cgroup: the state says paused, a counting loop
    stops counting, resumes counting, and a paused container is deleted with --force."""
    import json
    import time

    from tests.oci_runtime import new_id, write_bundle

    loop = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; usleep 5000; done"
    config = make_config(busybox_rootfs, ["sh", "-c", loop])
    config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    bundle = write_bundle(tmp_path / "bundle", config)
    cid = new_id()

    def status() -> str:
        return json.loads(peer_runtime("state", cid).stdout)["status"]

    def count() -> int:
        pid = json.loads(peer_runtime("state", cid).stdout)["pid"]
        for _ in range(100):  # the loop may be between its truncate and its write
            text = Path(f"/proc/{pid}/root/tmp/n").read_text().strip()
            if text:
                return int(text)
            time.sleep(0.001)
        raise AssertionError("the counter stays empty")

    try:
        assert peer_runtime("run", "--detach", "--bundle", str(bundle), cid).returncode == 0
        time.sleep(0.2)
        paused = peer_runtime("pause", cid)
        assert paused.returncode == 0, paused.stderr
        assert status() == "paused"
        before = count()
        time.sleep(0.3)
        assert count() == before  # frozen: not one more round
        assert peer_runtime("exec", cid, "true").returncode != 0  # no exec into it
        resumed = peer_runtime("resume", cid)
        assert resumed.returncode == 0, resumed.stderr
        assert status() == "running"
        time.sleep(0.3)
        assert count() > before
        assert peer_runtime("pause", cid).returncode == 0
    finally:
        deleted = peer_runtime("delete", "--force", cid)  # paused: thawed by the delete
    assert deleted.returncode == 0, deleted.stderr
    assert peer_runtime("list", "-q").stdout.split() == []



def _v1_limit(pid: int, controller: str, name: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}/{name}").read_text().strip()
    pytest.skip(f"no v1 {controller} controller here")


def test_update_changes_a_running_containers_limits(peer_runtime: OciRuntime,
                                                    busybox_rootfs: Path,
                                                    tmp_path: Path) -> None:
    """`update --memory 32m --pids-limit 50` and `update -r -` (containerd's way, the
    resources as JSON on stdin) write the running container's cgroup."""
    import json
    import subprocess

    from tests.oci_runtime import new_id, write_bundle

    config = make_config(busybox_rootfs, ["sleep", "60"])
    config["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    bundle = write_bundle(tmp_path / "bundle", config)
    cid = new_id()
    try:
        assert peer_runtime("run", "--detach", "--bundle", str(bundle), cid).returncode == 0
        pid = json.loads(peer_runtime("state", cid).stdout)["pid"]
        assert _v1_limit(pid, "memory", "memory.limit_in_bytes") == str(64 << 20)
        updated = peer_runtime("update", "--memory", str(32 << 20), "--pids-limit", "50", cid)
        assert updated.returncode == 0, updated.stderr
        assert _v1_limit(pid, "memory", "memory.limit_in_bytes") == str(32 << 20)
        assert _v1_limit(pid, "pids", "pids.max") == "50"
        piped = subprocess.run([peer_runtime.binary, "--root", str(peer_runtime.root),
                                "update", "-r", "-", cid], input=json.dumps(
                                    {"memory": {"limit": 48 << 20}, "pids": {"limit": 60}}),
                               capture_output=True, text=True, timeout=60, check=False)
        assert piped.returncode == 0, piped.stderr
        assert _v1_limit(pid, "memory", "memory.limit_in_bytes") == str(48 << 20)
        assert _v1_limit(pid, "pids", "pids.max") == "60"
    finally:
        stop_and_delete(peer_runtime, cid)


def test_update_reads_sizes_as_runc_does() -> None:
    """runc's --memory takes 33554432, 32m, 32M, 32MiB, 1g; -1 is unlimited."""
    from runtime.cli import _bytes

    assert [_bytes(t, "memory") for t in ("33554432", "32m", "32M", "32MiB", "1g", "-1")] == \
        [32 << 20, 32 << 20, 32 << 20, 32 << 20, 1 << 30, -1]


def test_sysctls_of_a_joined_network_namespace(peer_runtime: OciRuntime, busybox_rootfs: Path,
                                               tmp_path: Path) -> None:
    """podman joins the network namespace it made (``/run/netns/…``) and sets its net.*
    sysctls: they are the container's own, and runc sets them. The host's own namespace
    joined by path is refused, as runc refuses it: the write would change the host."""
    import os
    import subprocess

    key = "net.ipv4.ip_unprivileged_port_start"
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        for _ in range(100):  # unshare has run once the link names another namespace
            if os.readlink(path) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.02)
        config = make_config(busybox_rootfs, ["sh", "-c", "echo port=$(cat "
                                                          f"/proc/sys/{key.replace('.', '/')})"])
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                         if n["type"] != "network"] + [
            {"type": "network", "path": path}]
        config["linux"]["sysctl"] = {key: "1000"}
        proc = run_bundle(peer_runtime, copy.deepcopy(config), tmp_path / "joined")
        assert proc.returncode == 0, proc.stderr
        assert facts(proc.stdout) == {"port": "1000"}
        nsenter = subprocess.run(["nsenter", f"--net={path}", "cat",
                                  f"/proc/sys/{key.replace('.', '/')}"],
                                 capture_output=True, text=True, check=True)
        assert nsenter.stdout.strip() == "1000"  # set in the joined namespace itself
    finally:
        holder.kill()
        holder.wait()
    if Path(peer_runtime.binary).name == "crun":
        return  # crun 1.8 writes through the host's namespace (here harmlessly: its value)
    host_value = Path(f"/proc/sys/{key.replace('.', '/')}").read_text().strip()
    config["linux"]["namespaces"][-1]["path"] = f"/proc/{os.getpid()}/ns/net"
    config["linux"]["sysctl"] = {key: host_value}  # were it written: the host's own value
    proc = run_bundle(peer_runtime, copy.deepcopy(config), tmp_path / "host")
    assert proc.returncode != 0
    assert "sysctl" in proc.stderr, proc.stderr


def _receive_terminal(listener, seconds: float = 10) -> int:
    """The master an OCI runtime sends to a console socket (one fd in SCM_RIGHTS)."""
    import socket

    listener.settimeout(seconds)
    conn, _ = listener.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    assert len(fds) == 1
    return fds[0]


def _read_until_closed(fd: int, seconds: float = 10) -> str:
    import select

    chunks = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every slave closed (the process has exited)
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_terminal_goes_to_the_console_socket(peer_runtime: OciRuntime, busybox_rootfs: Path,
                                             tmp_path: Path) -> None:
    """`podman run -t` / `docker run -t`: process.terminal with `create --console-socket`;
    the runtime sends the terminal's master there, and the process's stdio is the slave, a
    terminal of the container's own devpts, its size from process.consoleSize. Then the
    same for `exec -t --console-socket` into the running container."""
    import socket

    from tests.oci_runtime import new_id, write_bundle

    config = make_config(busybox_rootfs, ["sh", "-c", "echo tty=$(tty) size=$(stty size "
                                          "| tr ' ' x); read line; echo got=$line"])
    config["process"]["terminal"] = True
    config["process"]["consoleSize"] = {"height": 33, "width": 101}
    bundle = write_bundle(tmp_path / "bundle", config)
    path = tmp_path / "console.sock"
    cid = new_id()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        try:
            created = peer_runtime("create", "--bundle", str(bundle), "--console-socket",
                                   str(path), cid)
            assert created.returncode == 0, created.stderr
            master = _receive_terminal(listener)
            try:
                assert peer_runtime("start", cid).returncode == 0
                os.write(master, b"typed\n")
                output = _read_until_closed(master)
            finally:
                os.close(master)
        finally:
            deleted = stop_and_delete(peer_runtime, cid)
    assert deleted.returncode == 0, deleted.stderr
    seen = facts(output.replace(" ", "\n"))
    assert {k: seen.get(k) for k in ("tty", "size", "got")} == \
        {"tty": "/dev/pts/0", "size": "33x101", "got": "typed"}, output

    running = write_bundle(tmp_path / "running", make_config(busybox_rootfs, ["sleep", "60"]))
    cid = new_id()
    path = tmp_path / "exec.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        try:
            assert peer_runtime("run", "--detach", "--bundle", str(running), cid).returncode == 0
            pid_file = tmp_path / "exec.pid"
            ran = peer_runtime("exec", "--tty", "--console-socket", str(path), "--detach",
                               "--pid-file", str(pid_file), cid, "sh", "-c",
                               "echo tty=$(tty); sleep 0.2")
            assert ran.returncode == 0, ran.stderr
            master = _receive_terminal(listener)
            try:
                output = _read_until_closed(master)
            finally:
                os.close(master)
            gone(int(pid_file.read_text()), 5)
        finally:
            deleted = stop_and_delete(peer_runtime, cid)
    assert deleted.returncode == 0, deleted.stderr
    assert facts(output).get("tty", "").startswith("/dev/pts/"), output


def _hook(script: str, **extra: object) -> dict:
    return {"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/usr/bin:/bin"],
            **extra}


def test_hooks_run_where_and_when_the_spec_says(peer_runtime: OciRuntime, busybox_rootfs: Path,
                                                tmp_path: Path) -> None:
    """Each kind of hook, with the container's state on its stdin: prestart and
    createRuntime in the runtime's namespaces, createContainer in the container's (before
    pivot_root: the host's /bin/sh), startContainer inside the container's root before its
    process runs, poststart once it runs, poststop after delete."""
    import json

    from tests.oci_runtime import new_id, write_bundle

    out = tmp_path / "hooks"
    out.mkdir()
    config = make_config(busybox_rootfs, ["sh", "-c", "echo seen=$(cat /dev/shm/started)"])
    config["hooks"] = {
        "prestart": [_hook(f"cat > {out}/prestart")],
        "createRuntime": [_hook(f"cat > {out}/createRuntime; readlink /proc/self/ns/mnt "
                                f"> {out}/createRuntime.mnt")],
        "createContainer": [_hook(f"cat > {out}/createContainer; readlink /proc/self/ns/mnt "
                                  f"> {out}/createContainer.mnt")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/shm/state; "
                                                        "echo inside > /dev/shm/started"]}],
        "poststart": [_hook(f"cat > {out}/poststart")],
        "poststop": [_hook(f"cat > {out}/poststop")],
    }
    bundle = write_bundle(tmp_path / "bundle", config)
    cid = new_id()
    created = peer_runtime("create", "--bundle", str(bundle), cid)
    assert created.returncode == 0, created.stderr
    try:
        pid = json.loads(peer_runtime("state", cid).stdout)["pid"]
        container_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
        for kind in ("prestart", "createRuntime", "createContainer"):
            state = json.loads((out / kind).read_text())
            # the spec says "creating"; crun 1.8 says "created"
            assert state["id"] == cid and state["status"] in ("creating", "created"), kind
            assert state["bundle"] == str(bundle)
            if kind != "createContainer":  # runc gives that one the pid inside (1)
                assert state["pid"] == pid, kind
        assert (out / "createRuntime.mnt").read_text().strip() == os.readlink("/proc/self/ns/mnt")
        assert (out / "createContainer.mnt").read_text().strip() == container_mnt
        if Path(peer_runtime.binary).name != "runc":  # runc 1.1 runs poststart at create
            assert not (out / "poststart").exists()  # (fixed in 1.2); the spec: at start
        started = peer_runtime("start", cid)
        assert started.returncode == 0, started.stderr
        if Path(peer_runtime.binary).name != "runc":
            assert json.loads((out / "poststart").read_text())["status"] == "running"
        gone(pid)
    finally:
        deleted = stop_and_delete(peer_runtime, cid)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads((out / "poststop").read_text())["status"] == "stopped"
    assert peer_runtime("list", "-q").stdout.split() == []


@pytest.mark.parametrize("kind", ["createRuntime", "createContainer", "startContainer"])
def test_a_failing_hook_fails_the_create_or_start(kind: str, peer_runtime: OciRuntime,
                                                  busybox_rootfs: Path, tmp_path: Path) -> None:
    """A failing prestart/createRuntime/createContainer hook fails create, a failing
    startContainer hook fails start, and the process never runs."""
    config = make_config(busybox_rootfs, ["sh", "-c", "echo ran=yes"])
    config["hooks"] = {kind: [{"path": "/bin/false"}]}
    proc = run_bundle(peer_runtime, copy.deepcopy(config), tmp_path / "bundle")
    assert proc.returncode != 0
    assert "ran=yes" not in proc.stdout


def test_a_hook_past_its_timeout_is_killed(peer_runtime: OciRuntime, busybox_rootfs: Path,
                                           tmp_path: Path) -> None:
    """Even with a state larger than a pipe holds that the hook never reads (not for crun
    1.8: it writes the state into a pipe, blocks there past the timeout, and leaves the
    container's cgroups when killed)."""
    config = make_config(busybox_rootfs, ["sh", "-c", "echo ran=yes"])
    if Path(peer_runtime.binary).name != "crun":
        config["annotations"] = {"org.vmvc.test.large": "x" * (256 << 10)}
    config["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"],
                                          "timeout": 1}]}
    began = time.monotonic()
    proc = run_bundle(peer_runtime, copy.deepcopy(config), tmp_path / "bundle")
    assert proc.returncode != 0 and "ran=yes" not in proc.stdout
    assert time.monotonic() - began < 20


def test_failing_poststart_and_poststop_hooks_are_warnings(peer_runtime: OciRuntime,
                                                           busybox_rootfs: Path,
                                                           tmp_path: Path) -> None:
    config = make_config(busybox_rootfs, ["sh", "-c", "echo ran=yes"])
    config["hooks"] = {"poststop": [{"path": "/bin/false"}]}
    proc = run_bundle(peer_runtime, copy.deepcopy(config), tmp_path / "bundle")
    assert proc.returncode == 0, proc.stderr
    assert facts(proc.stdout) == {"ran": "yes"}


@pytest.mark.parametrize("propagation", ["shared", "rshared"])
def test_a_shared_root_is_shared_inside_and_leaks_nothing_out(
        propagation: str, peer_runtime: OciRuntime, busybox_rootfs: Path,
        tmp_path: Path) -> None:
    """rootfsPropagation shared: the container's root is a shared mount (its own mount
    namespaces inside receive its mounts), and a mount made inside never shows on the
    host."""
    config = make_config(busybox_rootfs, ["sh", "-c",
                                          "echo shared=$(awk '$5 == \"/\" {print "
                                          "($0 ~ / shared:/) ? \"yes\" : \"no\"}' "
                                          "/proc/self/mountinfo); mount -t tmpfs vmvcleak "
                                          "/dev/shm && echo mounted=yes"])
    config["linux"]["rootfsPropagation"] = propagation
    config["linux"].pop("seccomp", None)  # the mount inside needs CAP_SYS_ADMIN and mount(2)
    for caps in config["process"]["capabilities"].values():
        if caps is not config["process"]["capabilities"]["inheritable"]:
            caps.append("CAP_SYS_ADMIN")
    before = Path("/proc/self/mountinfo").read_text().count("vmvcleak")
    proc = run_bundle(peer_runtime, copy.deepcopy(config), tmp_path / "bundle")
    assert proc.returncode == 0, proc.stderr
    # runc 1.1.5's root shows no peer group (its later remounts); crun's is shared, as ours
    shared = "no" if Path(peer_runtime.binary).name == "runc" else "yes"
    assert facts(proc.stdout) == {"shared": shared, "mounted": "yes"}, proc.stdout
    assert Path("/proc/self/mountinfo").read_text().count("vmvcleak") == before


def test_a_start_container_hook_has_the_containers_privileges(peer_runtime: OciRuntime,
                                                              busybox_rootfs: Path,
                                                              tmp_path: Path) -> None:
    """startContainer runs a program of the image's: with the container's user and
    capabilities, in its PID namespace, never as the runtime's root (runc's order)."""
    config = make_config(busybox_rootfs, ["sh", "-c", "cat /dev/shm/hook"])
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    config["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": [
        "sh", "-c", "echo uid=$(id -u) > /dev/shm/hook; echo eff=$(awk '/^CapEff/ "
        "{print $2}' /proc/self/status) >> /dev/shm/hook; echo pid1=$(cat /proc/1/comm) "
        ">> /dev/shm/hook"]}]}
    proc = run_bundle(peer_runtime, copy.deepcopy(config), tmp_path / "bundle")
    assert proc.returncode == 0, proc.stderr
    seen = facts(proc.stdout)
    assert seen["uid"] == "1000" and seen["eff"] == "0000000000000000", proc.stdout
    host_init = Path("/proc/1/comm").read_text().strip()
    assert seen["pid1"] != host_init, proc.stdout  # the container's PID 1, not the host's


def test_a_co_mounted_v1_hierarchy_is_found_by_its_first_controller() -> None:
    """cpu,cpuacct mounted together (systemd's hosts): the container's own cgroup there,
    never the hierarchy's root by default."""
    from runtime.errors import ContainerError
    from runtime.process import _own_path

    own = {"cpu": "/vmvc-x", "cpuacct": "/vmvc-x", "systemd": "/user.slice"}
    assert _own_path(own, "cpu,cpuacct") == "/vmvc-x"
    assert _own_path(own, "systemd") == "/user.slice"
    with pytest.raises(ContainerError, match="net_cls,net_prio"):
        _own_path(own, "net_cls,net_prio")
