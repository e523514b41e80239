"""eBPF for the cgroup v2 device filter: a small assembler (only the instructions a device
program needs, named as the kernel's uapi/linux/bpf.h names their parts) and the two bpf(2)
calls that load a program and attach it to a cgroup.

Python has no bpf(): the calls go through ctypes. ``load`` and ``attach`` are the seam a test
replaces to see what happens when the kernel refuses (no eBPF, a locked-down host).
"""

from __future__ import annotations

import ctypes
import os
import struct

# Instruction classes: the low three bits of the opcode.
LDX, ALU, JMP = 0x01, 0x04, 0x05
# For LDX: the width loaded (W: 32 bits) and the addressing mode (MEM: *(src + off)).
SIZE_W, MODE_MEM = 0x00, 0x60
# For ALU and JMP: the second operand is the immediate (K) or the source register (X).
SRC_K, SRC_X = 0x00, 0x08
# ALU operations (ALU is the 32-bit class: results are zero-extended to 64 bits).
OP_AND, OP_RSH, OP_MOV = 0x50, 0x70, 0xB0
# JMP operations (JMP compares the full 64-bit registers).
OP_JNE, OP_EXIT = 0x50, 0x90

R0, R1, R2, R3, R4, R5 = range(6)  # R0: return value; R1: the program's context pointer

SYS_BPF = 321  # x86_64
BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_MULTI = 2  # other programs (a parent's, systemd's) stay attached and all must allow

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class Insn:
    """One ``struct bpf_insn``; a jump names its target label until ``assemble`` resolves it."""

    __slots__ = ("code", "dst", "imm", "off", "src", "target")

    def __init__(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
                 target: str | None = None) -> None:
        self.code, self.dst, self.src, self.off, self.imm = code, dst, src, off, imm
        self.target = target

    def __repr__(self) -> str:
        where = f" -> {self.target}" if self.target else ""
        return f"Insn({self.code:#04x}, r{self.dst}, r{self.src}, {self.off}, {self.imm}{where})"

    def encode(self) -> bytes:
        """8 bytes, little-endian: opcode, dst in the low nibble and src in the high one,
        a signed 16-bit offset, a signed 32-bit immediate."""
        return struct.pack("<BBhi", self.code, self.src << 4 | self.dst, self.off, self.imm)


def load_word(dst: int, base: int, offset: int) -> Insn:
    """dst = *(u32 *)(base + offset): how a program reads its context's fields."""
    return Insn(LDX | SIZE_W | MODE_MEM, dst, base, offset)


def and32(dst: int, imm: int) -> Insn:
    return Insn(ALU | OP_AND | SRC_K, dst, imm=imm)


def rsh32(dst: int, imm: int) -> Insn:
    return Insn(ALU | OP_RSH | SRC_K, dst, imm=imm)


def mov32(dst: int, imm: int) -> Insn:
    return Insn(ALU | OP_MOV | SRC_K, dst, imm=imm)


def mov32_reg(dst: int, src: int) -> Insn:
    return Insn(ALU | OP_MOV | SRC_X, dst, src)


def jne(dst: int, imm: int, target: str) -> Insn:
    """if dst != imm: goto target."""
    return Insn(JMP | OP_JNE | SRC_K, dst, imm=imm, target=target)


def jne_reg(dst: int, src: int, target: str) -> Insn:
    """if dst != src: goto target."""
    return Insn(JMP | OP_JNE | SRC_X, dst, src, target=target)


def exit_() -> Insn:
    """Return R0 to the kernel."""
    return Insn(JMP | OP_EXIT)


def resolve(program: list[Insn | str]) -> list[Insn]:
    """The instructions with every jump's offset filled in. A ``str`` in *program* is a label
    for the instruction after it; a jump's offset counts the instructions it skips."""
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    for index, insn in enumerate(insns):
        if insn.target is not None:
            insn.off = labels[insn.target] - (index + 1)
    return insns


def assemble(program: list[Insn | str]) -> bytes:
    return b"".join(insn.encode() for insn in resolve(program))


def _bpf(command: int, attr: bytes, call: str) -> int:
    buffer = ctypes.create_string_buffer(attr, len(attr))
    result = _libc.syscall(SYS_BPF, command, buffer, len(attr))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{call}: {os.strerror(err)}")
    return result


def load(prog_type: int, code: bytes, license_: bytes = b"GPL") -> int:
    """BPF_PROG_LOAD: the verifier checks *code*; returns the program's fd."""
    insns = ctypes.create_string_buffer(code, len(code))
    licence = ctypes.create_string_buffer(license_)
    # union bpf_attr, the BPF_PROG_LOAD part up to kern_version; the rest stays zero
    attr = struct.pack("<IIQQIIQI", prog_type, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(licence), 0, 0, 0, 0)
    return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")


def attach(prog_fd: int, target_fd: int, attach_type: int, flags: int) -> None:
    """BPF_PROG_ATTACH: the target (a cgroup directory's fd) holds its own reference to the
    program, so the caller's fd may be closed; removing the cgroup releases the program."""
    attr = struct.pack("<IIIII", target_fd, prog_fd, attach_type, flags, 0)
    _bpf(BPF_PROG_ATTACH, attr, "bpf(BPF_PROG_ATTACH)")
