"""The last step before a container's own program: a tiny static ELF, run from a sealed memfd,
that only calls ``execve(argv[0], argv + 1, envp)``.

Why: the container's init and ``exec`` processes are forks of the host's Python. Were they
to execve the workload directly, ``/proc/self/exe`` would still name the host interpreter
while the kernel resolves the workload's ``#!`` line, so an image whose ``/bin/sh`` starts
with ``#!/proc/self/exe`` would run the host's Python inside the container, and a second
container process could reopen ``/proc/PID/exe`` for writing and overwrite the host binary
(CVE-2019-5736, the runc escape). runc and crun answer by running from a sealed memfd copy
of themselves; a copy of the interpreter would not do here (Python's exe is only one of the
files it runs from, and re-executing it costs ~12 ms). Exec'ing this stub first makes
``/proc/self/exe`` a sealed, unlinked memfd of a few hundred bytes at that moment: nothing
of the host is left to reach, and the second execve costs ~0.1 ms.

The machine code is assembled here instruction by instruction, with the assembly beside
each; the stub has no data, no libc and no dynamic loader. x86_64 only, which is what
vmvc's machines and CI runners are; elsewhere :func:`sealed_stub` refuses with one line.
"""

from __future__ import annotations

import fcntl
import os
import struct

from runtime.errors import ContainerError

BASE = 0x400000  # load address of the single PT_LOAD segment
EHDR_SIZE, PHDR_SIZE = 64, 56
MFD_EXEC = 0x0010
MESSAGE = b"vmvc-runtime: exec failed: the program, its #! interpreter or its ELF loader " \
          b"is missing or not executable in the container\n"

# x86_64, at entry: [rsp] = argc, [rsp+8] = argv[0], ..., NULL, envp[0], ..., NULL
X86_64_CODE = [
    (b"\x48\x83\x3c\x24\x02", "cmp qword [rsp], 2        ; argc < 2: nothing to run"),
    (b"\x72\x00", "jb FAIL                  ; patched below (a #!/proc/self/exe script"
                    " ends here, not in an exec loop)"),
    (b"\x48\x8b\x7c\x24\x08", "mov rdi, [rsp+8]         ; path = argv[0]"),
    (b"\x48\x8d\x74\x24\x10", "lea rsi, [rsp+16]        ; argv = &argv[1]"),
    (b"\x48\x8b\x04\x24", "mov rax, [rsp]           ; argc"),
    (b"\x48\x8d\x54\xc4\x10", "lea rdx, [rsp+rax*8+16]  ; envp = &argv[argc + 1]"),
    (b"\xb8\x3b\x00\x00\x00", "mov eax, 59              ; SYS_execve"),
    (b"\x0f\x05", "syscall                   ; returns only on failure: rax = -errno"),
    (b"\x49\x89\xc4", "mov r12, rax              ; keep -errno for the exit status"),
    (b"\xbf\x02\x00\x00\x00", "FAIL: mov edi, 2         ; fd: stderr"),
    (b"\x48\x8d\x35\x00\x00\x00\x00", "lea rsi, [rip+MESSAGE]   ; patched below"),
    (b"\xba\x00\x00\x00\x00", "mov edx, len(MESSAGE)     ; patched below"),
    (b"\xb8\x01\x00\x00\x00", "mov eax, 1               ; SYS_write"),
    (b"\x0f\x05", "syscall"),
    (b"\xbf\x7e\x00\x00\x00", "mov edi, 126             ; found but not executable"),
    (b"\x49\x83\xfc\xfe", "cmp r12, -2              ; -ENOENT?"),
    (b"\x75\x02", "jne +2"),
    (b"\xff\xc7", "inc edi                  ; 127: not found, as a shell says"),
    (b"\xb8\xe7\x00\x00\x00", "mov eax, 231             ; SYS_exit_group"),
    (b"\x0f\x05", "syscall"),
]
_JB_FAIL = 1  # index of the jump to the failure path
_FAIL = 9  # index of its target
_LEA_MESSAGE = 10  # index of the lea whose rip-relative offset points at MESSAGE
_MOV_LENGTH = 11


def x86_64_code() -> bytes:
    """The stub's instructions with the jump, the message's offset and length filled in."""
    sizes = [len(code) for code, _ in X86_64_CODE]
    after_lea = sum(sizes[:_LEA_MESSAGE + 1])
    patched = [code for code, _ in X86_64_CODE]
    patched[_JB_FAIL] = b"\x72" + bytes([sum(sizes[:_FAIL]) - sum(sizes[:_JB_FAIL + 1])])
    patched[_LEA_MESSAGE] = patched[_LEA_MESSAGE][:3] + struct.pack("<i", sum(sizes) - after_lea)
    patched[_MOV_LENGTH] = b"\xba" + struct.pack("<I", len(MESSAGE))
    return b"".join(patched) + MESSAGE


def elf(code: bytes, machine: int = 0x3E) -> bytes:
    """A static ELF64 executable: header, one read+execute PT_LOAD segment, *code*."""
    entry = BASE + EHDR_SIZE + PHDR_SIZE
    size = EHDR_SIZE + PHDR_SIZE + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian, SysV
    header = struct.pack("<16sHHIQQQIHHHHHH", ident, 2, machine, 1, entry, EHDR_SIZE, 0, 0,
                         EHDR_SIZE, PHDR_SIZE, 1, 0, 0, 0)  # ET_EXEC, one program header
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, size, size, 0x1000)  # PT_LOAD, R+X
    return header + segment + code


_STUB: bytes | None = None


def sealed_stub() -> int:
    """Called inside the container (after pivot_root: nothing may be imported here): a
    close-on-exec memfd holding the stub, sealed against any write, growth or shrink
    (so even a container that reopens it through /proc cannot change it)."""
    global _STUB
    machine = os.uname().machine
    if machine != "x86_64":
        raise ContainerError(f"vmvc-runtime runs containers on x86_64 only (its exec stub, "
                             f"which keeps the host's interpreter out of reach, is built for "
                             f"x86_64; this is {machine})")
    if _STUB is None:
        _STUB = elf(x86_64_code())
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:  # MFD_EXEC: kernels >= 6.3 may default memfds to noexec (vm.memfd_noexec)
        fd = os.memfd_create("vmvc-exec", flags | MFD_EXEC)
    except OSError:  # older kernels know no MFD_EXEC (EINVAL): executable by default there
        fd = os.memfd_create("vmvc-exec", flags)
    os.write(fd, _STUB)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd
