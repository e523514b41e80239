"""Device access (issue 11, items 6 and 7): a container that may make device nodes must still
open only the devices its rules allow.

- cgroup v1: a rule of type "a" with a major and minor was written as ``a 1:3 rwm``, which the
  kernel reads as "every device"; a workload with CAP_MKNOD could then open any host device.
- cgroup v2 has no devices controller: without an eBPF program attached to the container's
  cgroup, nothing stops such a workload. The real cgroup2 hierarchy of this hybrid host
  (/sys/fs/cgroup/unified) takes the program; a child moved into it tries the devices.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from runtime import cgroups, device_filter, ebpf
from runtime.config import DeviceRule, Resources, Spec, parse_config
from runtime.container import _check_device_policy
from runtime.errors import ContainerError
from tests.oci_runtime import BUILTIN, RUNTIME, OciRuntime, make_config, new_id, write_bundle

UNIFIED = "/sys/fs/cgroup/unified"
BPF_PROG_GET_FD_BY_ID, BPF_PROG_QUERY = 13, 16  # bpf(2) commands only these tests make
DENY_ALL = DeviceRule(False, "a", None, None, "rwm")
MKNOD = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_MKNOD"]


def host_block_device() -> tuple[int, int, str]:
    """A block device of this host that the host itself may open for reading: (major, minor,
    node). Loop devices first (an unbound one holds nothing); this sandbox refuses even root
    the root disk (/dev/vda), so that one proves nothing here."""
    found = []
    for entry in Path("/sys/dev/block").iterdir():
        uevent = dict(line.split("=", 1) for line in (entry / "uevent").read_text().split())
        major, minor = (int(n) for n in entry.name.split(":"))
        found.append((not uevent["DEVNAME"].startswith("loop"), major, minor,
                      "/dev/" + uevent["DEVNAME"]))
    for _, major, minor, node in sorted(found):
        try:
            os.close(os.open(node, os.O_RDONLY))
            return major, minor, node
        except OSError:
            continue
    pytest.skip("no block device here that the host may open")


# -- item 7: cgroup v1, type "a" with a major/minor ---------------------------------------------
V1_DIVERGES = pytest.mark.xfail(
    not BUILTIN and not cgroups.is_unified(), strict=True,
    reason=f"{Path(RUNTIME).name} writes a type 'a' rule to cgroup v1 as 'a' whatever its "
    "major/minor (runc's emulator and crun's v1 writer alike): every device is allowed")


@V1_DIVERGES
def test_type_a_with_numbers_does_not_allow_every_device(busybox_rootfs: Path,
                                                         tmp_path: Path) -> None:
    major, minor, _ = host_block_device()
    workload = (f"mknod /dev/vmvc-blk b {major} {minor} && echo mknod=ok\n"
                "(exec 3</dev/vmvc-blk) 2>&1 && echo open=ok\n")
    config = make_config(busybox_rootfs, ["/bin/sh", "-c", workload], resources={"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "a", "major": 1, "minor": 3, "access": "rwm"},  # /dev/null only
    ]})
    config["process"]["capabilities"].update(bounding=MKNOD, effective=MKNOD, permitted=MKNOD)
    proc = OciRuntime(tmp_path / "state")(
        "run", "--bundle", str(write_bundle(tmp_path / "b", config)), new_id())
    assert "mknod=ok" in proc.stdout, proc.stderr  # making the node is allowed (b *:* m) ...
    assert "open=ok" not in proc.stdout  # ... opening a host block device through it is not
    assert "Operation not permitted" in proc.stdout


def test_type_a_with_numbers_is_spelled_out_as_char_and_block() -> None:
    rule = DeviceRule(True, "a", 1, 3, "rwm")
    spelled = cgroups.device_rules(Resources(devices=[DENY_ALL, rule]))
    assert [(r.type, r.major, r.minor) for r in spelled[:3]] == [
        ("a", None, None), ("c", 1, 3), ("b", 1, 3)]
    assert spelled[3:] == cgroups.ALWAYS_ALLOWED_DEVICES


# -- item 6: cgroup v2, the eBPF device filter ------------------------------------------------
PROBE = """
import os, sys
sys.stdin.readline()  # moved into the cgroup by now
for item in sys.argv[1:]:
    path, mode = item.rsplit(":", 1)
    try:
        os.close(os.open(path, {"r": os.O_RDONLY, "w": os.O_WRONLY}[mode]))
        print(item, "ok")
    except OSError as exc:
        print(item, os.strerror(exc.errno))
"""


@pytest.fixture
def unified(as_root: None) -> str:
    if not Path(UNIFIED, "cgroup.procs").exists():
        pytest.skip(f"no cgroup2 hierarchy at {UNIFIED}")
    return UNIFIED


def _attached_programs(path: str) -> list[int]:
    """BPF_PROG_QUERY: the ids of the device programs attached to the cgroup at *path*."""
    ids = (ctypes.c_uint32 * 64)()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attr = ctypes.create_string_buffer(struct.pack(
            "<IIIIQI", fd, ebpf.BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64), 40)
        assert ebpf._libc.syscall(ebpf.SYS_BPF, BPF_PROG_QUERY, attr, 40) == 0, os.strerror(
            ctypes.get_errno())
    finally:
        os.close(fd)
    return list(ids[:struct.unpack_from("<I", attr.raw, 24)[0]])


def _program_exists(prog_id: int) -> bool:
    """BPF_PROG_GET_FD_BY_ID: is the program still loaded anywhere in the kernel?"""
    attr = ctypes.create_string_buffer(struct.pack("<I", prog_id), 16)
    fd = ebpf._libc.syscall(ebpf.SYS_BPF, BPF_PROG_GET_FD_BY_ID, attr, 16)
    if fd >= 0:
        os.close(fd)
        return True
    assert ctypes.get_errno() == errno.ENOENT
    return False


def probe_in_cgroup(rules: list[DeviceRule], *tries: str) -> dict[str, str]:
    """Create a v2 cgroup with *rules*, run a child in it that opens each ``path:r|w``, remove
    the cgroup, and check that its one program went with it. {try: "ok" or the error}."""
    cgroup = cgroups.CgroupV2(f"vmvc-devtest-{uuid.uuid4().hex[:8]}", root=UNIFIED)
    child, programs = None, []
    try:
        cgroup.create(Resources(devices=rules))
        programs = _attached_programs(cgroup.dir)
        child = subprocess.Popen([sys.executable, "-c", PROBE, *tries], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        cgroup.add(child.pid)
        out, _ = child.communicate("go\n", timeout=30)
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if cgroup.created:
            cgroup.delete()
    assert not os.path.exists(cgroup.dir)
    deadline = time.monotonic() + 5  # the cgroup frees its programs from a workqueue
    while any(map(_program_exists, programs)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(map(_program_exists, programs)), "a device program outlived its cgroup"
    seen = dict(line.split(" ", 1) for line in out.splitlines())
    assert (cgroup.device_filter_error, len(programs)) == (None, 1), seen
    return seen


def test_v2_filter_denies_all_but_the_default_devices(unified: str) -> None:
    _, _, block_node = host_block_device()
    seen = probe_in_cgroup([DENY_ALL], "/dev/null:w", "/dev/zero:r", "/dev/loop-control:r",
                           f"{block_node}:r")
    assert seen == {"/dev/null:w": "ok", "/dev/zero:r": "ok",
                    "/dev/loop-control:r": "Operation not permitted",
                    f"{block_node}:r": "Operation not permitted"}


def test_v2_filter_follows_access_and_type_a_numbers(unified: str) -> None:
    read_only = DeviceRule(True, "c", 10, 237, "r")  # /dev/loop-control, reading only
    seen = probe_in_cgroup([DENY_ALL, read_only], "/dev/loop-control:r", "/dev/loop-control:w")
    assert seen == {"/dev/loop-control:r": "ok", "/dev/loop-control:w": "Operation not permitted"}
    any_kind = DeviceRule(True, "a", 10, 237, "rw")  # what item 7 is about, on v2
    seen = probe_in_cgroup([DENY_ALL, any_kind], "/dev/loop-control:w", "/dev/null:w")
    assert seen == {"/dev/loop-control:w": "ok", "/dev/null:w": "ok"}


def test_v2_filter_denies_one_device_of_a_privileged_container(unified: str) -> None:
    allow_all, no_loop = DeviceRule(True, "a", None, None, "rwm"), DeviceRule(
        False, "c", 10, 237, "rwm")
    _, _, block_node = host_block_device()
    seen = probe_in_cgroup([allow_all, no_loop], "/dev/loop-control:r", f"{block_node}:r")
    assert seen == {"/dev/loop-control:r": "Operation not permitted", f"{block_node}:r": "ok"}


def _spec(capabilities: list[str]) -> Spec:
    config = make_config(Path("/"), ["true"])
    config["process"]["capabilities"].update(bounding=capabilities, effective=capabilities,
                                             permitted=capabilities)
    return parse_config(config)


def test_v2_refuses_mknod_only_where_the_filter_cannot_be_attached(
        unified: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with_mknod, without = _spec(MKNOD), _spec(MKNOD[:-1])
    for refused in (False, True):
        if refused:  # a kernel without eBPF, or one that does not let us load programs
            def no_bpf(*_: object) -> int:
                raise OSError(errno.EPERM, "bpf(BPF_PROG_LOAD): Operation not permitted")
            monkeypatch.setattr(ebpf, "load", no_bpf)
        cgroup = cgroups.CgroupV2(f"vmvc-devtest-{uuid.uuid4().hex[:8]}", root=UNIFIED)
        try:
            cgroup.create(Resources(devices=[DENY_ALL]))
            assert (cgroup.device_filter_error is not None) == refused
            _check_device_policy(without, cgroup)  # no CAP_MKNOD: /dev holds only our nodes
            if refused:
                with pytest.raises(ContainerError, match=r"linux\.resources\.devices.*CAP_MKNOD"
                                   ) as refusal:
                    _check_device_policy(with_mknod, cgroup)
                assert "\n" not in str(refusal.value)  # one line, for the CLI
            else:
                _check_device_policy(with_mknod, cgroup)
        finally:
            cgroup.delete()
        assert not os.path.exists(cgroup.dir)


# -- the program, beside the real tests: the same decisions as runc's devicefilter ------------
def run(program: list[ebpf.Insn | str], kind: str, access: str, major: int, minor: int) -> int:
    """Interpret the few instructions a device program uses, on one request."""
    ctx = struct.pack("<III", device_filter._bits(access) << 16 | device_filter.DEVICE_TYPE[kind],
                      major, minor)
    insns, regs, pc = ebpf.resolve(program), [0] * 11, 0
    for _ in range(len(insns)):  # no backward jumps: each instruction runs at most once
        op = insns[pc]
        pc += 1
        operand = regs[op.src] if op.code & ebpf.SRC_X else op.imm
        if op.code == ebpf.LDX | ebpf.SIZE_W | ebpf.MODE_MEM:
            regs[op.dst] = struct.unpack_from("<I", ctx, op.off)[0]
        elif op.code & 0x07 == ebpf.ALU:
            alu = {ebpf.OP_AND: lambda a, b: a & b, ebpf.OP_RSH: lambda a, b: a >> b,
                   ebpf.OP_MOV: lambda a, b: b}[op.code & 0xF0]
            regs[op.dst] = alu(regs[op.dst], operand) & 0xFFFFFFFF
        elif op.code == ebpf.JMP | ebpf.OP_EXIT:
            return regs[ebpf.R0]
        elif op.code & 0xF0 == ebpf.OP_JNE and regs[op.dst] != operand:
            pc += op.off
    raise AssertionError("the program ran off its end")


def decide(rules: list[DeviceRule], *requests: tuple[str, str, int, int]) -> list[int]:
    program = device_filter.program(rules)
    return [run(program, *request) for request in requests]


def test_no_rules_deny_everything() -> None:
    program = device_filter.program([])
    assert len(ebpf.resolve(program)) == 8  # runc's TestDeviceFilter_Nil: load, return 0
    assert decide([], ("c", "r", 1, 3), ("b", "m", 8, 0)) == [0, 0]


def test_the_default_devices_in_runcs_order() -> None:
    rule_set = device_filter.RuleSet()
    for rule in cgroups.ALWAYS_ALLOWED_DEVICES:
        rule_set.apply(rule)
    # runc sorts by major, minor, type with wildcards first (TestDeviceFilter_BuiltInAllowList)
    assert [spec for spec, _ in rule_set.ordered()] == [
        ("b", None, None), ("c", None, None), ("c", 1, 3), ("c", 1, 5), ("c", 1, 7),
        ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1), ("c", 5, 2), ("c", 136, None)]
    assert decide(cgroups.ALWAYS_ALLOWED_DEVICES, ("c", "rw", 1, 3), ("b", "m", 254, 0),
                  ("b", "r", 254, 0), ("c", "rw", 136, 4), ("c", "r", 10, 237),
                  ("c", "rm", 1, 3)) == [1, 1, 0, 1, 0, 1]


def test_privileged_and_its_exceptions() -> None:
    allow_all = DeviceRule(True, "a", None, None, "rwm")
    assert len(ebpf.resolve(device_filter.program([allow_all]))) == 8  # return 1, nothing else
    no_sda = DeviceRule(False, "b", 8, 0, "rwm")  # TestDeviceFilter_PrivilegedExceptSingleDevice
    assert decide([allow_all, no_sda], ("b", "r", 8, 0), ("b", "r", 8, 1),
                  ("c", "r", 8, 0)) == [0, 1, 1]
    # TestDeviceFilter_Weird: a rule before "allow all" is reset by it; one after it holds
    weird = [DeviceRule(False, "b", 8, 1, "rwm"), allow_all, DeviceRule(False, "b", 8, 2, "rwm")]
    assert decide(weird, ("b", "r", 8, 1), ("b", "r", 8, 2)) == [1, 0]


def test_access_as_cgroup_v1_merges_and_withdraws_it() -> None:
    read, write = DeviceRule(True, "c", 1, 3, "r"), DeviceRule(True, "c", 1, 3, "w")
    assert decide([read], ("c", "r", 1, 3), ("c", "rw", 1, 3), ("c", "w", 1, 3)) == [1, 0, 0]
    assert decide([read, write], ("c", "rw", 1, 3)) == [1]  # two rules, one exception
    no_write = DeviceRule(False, "c", 1, 3, "w")
    assert decide([DeviceRule(True, "c", 1, 3, "rwm"), no_write],
                  ("c", "r", 1, 3), ("c", "w", 1, 3)) == [1, 0]


def test_a_hole_in_a_wildcard_rule_is_refused() -> None:
    rules = [DeviceRule(True, "c", None, None, "rwm"), DeviceRule(False, "c", 1, 3, "w")]
    with pytest.raises(ContainerError, match=r"linux\.resources\.devices.*c 1:3.*c \*:\*"):
        device_filter.program(rules)
