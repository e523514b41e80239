"""The cgroup v2 device filter: the container's device rules made into a
BPF_PROG_TYPE_CGROUP_DEVICE program attached to its cgroup, as runc
(libcontainer/cgroups/devices/devicefilter.go) and crun (src/libcrun/ebpf.c) do.

cgroup v2 has no devices controller: without a program, every device node a container can
reach (or make, with CAP_MKNOD) opens. The rules are first applied in order the way cgroup
v1's controller applies them (runc's emulator does the same), so a spec means the same on
both versions; the program then tests the exceptions that remain and returns the default.
"""

from __future__ import annotations

import os

from runtime import ebpf
from runtime.config import DeviceRule
from runtime.errors import ContainerError

ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
ALL_ACCESS = 7
DEVICE_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, _CHAR
Match = tuple[str, int | None, int | None]  # (type, major, minor); None matches any number


def _bits(access: str) -> int:
    return sum(ACCESS_BITS[letter] for letter in set(access))


class RuleSet:
    """The state cgroup v1's devices controller reaches from the rules, in order: a default
    (allow or deny) and the exceptions to it, with the access each one covers.

    A rule for every device ("a", no numbers) sets the default and drops the exceptions; a rule
    whose verdict differs from the default adds an exception; one that agrees with the default
    takes access away from an exception of exactly its match. Taking access away from part of a
    wildcard exception is refused, as runc refuses it: v1 silently ignores it, and a filter
    that looked stricter than it is would be worse than an error.
    """

    def __init__(self) -> None:
        self.default_allow = False
        self.exceptions: dict[Match, int] = {}

    def apply(self, rule: DeviceRule) -> None:
        if rule.type == "a":
            if rule.major is not None or rule.minor is not None:
                raise ValueError("type 'a' with a major or minor: split it into c and b first")
            self.default_allow, self.exceptions = rule.allow, {}
            return
        match, bits = (rule.type, rule.major, rule.minor), _bits(rule.access)
        if rule.allow != self.default_allow:
            self.exceptions[match] = self.exceptions.get(match, 0) | bits
        else:
            self._withdraw(match, bits)

    def _withdraw(self, match: Match, bits: int) -> None:
        kind, major, minor = match
        for wider in ((kind, None, minor), (kind, major, None), (kind, None, None)):
            if wider != match and self.exceptions.get(wider, 0) & bits:
                raise ContainerError(
                    f"config.json: linux.resources.devices: the rule for {_spell(match)} cuts "
                    f"into the wider rule for {_spell(wider)}, which the device controller "
                    "cannot do: list the exceptions you mean instead")
        left = self.exceptions.pop(match, 0) & ~bits
        if left:
            self.exceptions[match] = left

    def ordered(self) -> list[tuple[Match, int]]:
        """Exceptions by (major, minor, type), wildcards first: runc's order, so the same
        rules give the same program."""
        def key(item: tuple[Match, int]) -> tuple[int, int, str]:
            (kind, major, minor), _ = item
            return (-1 if major is None else major, -1 if minor is None else minor, kind)
        return sorted(self.exceptions.items(), key=key)


def _spell(match: Match) -> str:
    kind, major, minor = match
    return f"{kind} {'*' if major is None else major}:{'*' if minor is None else minor}"


def program(rules: list[DeviceRule]) -> list[ebpf.Insn | str]:
    """The filter for *rules* (applied in order from deny-all), as instructions and labels."""
    rule_set = RuleSet()
    for rule in rules:
        rule_set.apply(rule)
    code: list[ebpf.Insn | str] = [
        # struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }, with
        # access_type = access << 16 | device type. R1 points at it; R1 is then free as scratch.
        ebpf.load_word(ebpf.R2, ebpf.R1, 0), ebpf.and32(ebpf.R2, 0xFFFF),  # R2: device type
        ebpf.load_word(ebpf.R3, ebpf.R1, 0), ebpf.rsh32(ebpf.R3, 16),  # R3: access wanted
        ebpf.load_word(ebpf.R4, ebpf.R1, 4),  # R4: major
        ebpf.load_word(ebpf.R5, ebpf.R1, 8),  # R5: minor
    ]
    verdict = 0 if rule_set.default_allow else 1  # every exception says the opposite
    for number, ((kind, major, minor), bits) in enumerate(rule_set.ordered()):
        code += [f"rule-{number}", *_exception(f"rule-{number + 1}", kind, major, minor, bits),
                 ebpf.mov32(ebpf.R0, verdict), ebpf.exit_()]
    end = f"rule-{len(rule_set.exceptions)}"
    return [*code, end, ebpf.mov32(ebpf.R0, 1 - verdict), ebpf.exit_()]


def _exception(skip: str, kind: str, major: int | None, minor: int | None,
               bits: int) -> list[ebpf.Insn]:
    """Tests that jump to *skip* unless the request falls under this exception."""
    tests = [ebpf.jne(ebpf.R2, DEVICE_TYPE[kind], skip)]
    if bits != ALL_ACCESS:  # every access wanted must be one the exception covers
        tests += [ebpf.mov32_reg(ebpf.R1, ebpf.R3), ebpf.and32(ebpf.R1, bits),
                  ebpf.jne_reg(ebpf.R1, ebpf.R3, skip)]
    if major is not None:
        tests.append(ebpf.jne(ebpf.R4, major, skip))
    if minor is not None:
        tests.append(ebpf.jne(ebpf.R5, minor, skip))
    return tests


def install(cgroup_dir: str, rules: list[DeviceRule]) -> None:
    """Load the filter for *rules* and attach it to *cgroup_dir* (before any process joins).
    The program's fd is closed here: the cgroup keeps the program until it is removed.
    OSError when the kernel refuses (no eBPF here, not allowed); ContainerError for rules
    no device controller can express."""
    code = ebpf.assemble(program(rules))
    dir_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        prog_fd = ebpf.load(ebpf.BPF_PROG_TYPE_CGROUP_DEVICE, code)
        try:
            ebpf.attach(prog_fd, dir_fd, ebpf.BPF_CGROUP_DEVICE, ebpf.BPF_F_ALLOW_MULTI)
        finally:
            os.close(prog_fd)
    finally:
        os.close(dir_fd)
