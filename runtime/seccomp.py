"""The spec's linux.seccomp section compiled to a BPF program with libseccomp (through
pyseccomp), cached on disk by the section's hash, and loaded in the container with one
prctl: the container's start-up does not pay for compiling ~350 rules each time."""

from __future__ import annotations

import marshal
import os

from runtime.errors import ContainerError

ARCHES = {"SCMP_ARCH_X86_64": "X86_64", "SCMP_ARCH_X86": "X86", "SCMP_ARCH_X32": "X32",
          "SCMP_ARCH_AARCH64": "AARCH64", "SCMP_ARCH_ARM": "ARM"}
OPS = {"SCMP_CMP_NE": "NE", "SCMP_CMP_LT": "LT", "SCMP_CMP_LE": "LE", "SCMP_CMP_EQ": "EQ",
       "SCMP_CMP_GE": "GE", "SCMP_CMP_GT": "GT", "SCMP_CMP_MASKED_EQ": "MASKED_EQ"}
EPERM = 1

try:  # the built-in module: importing hashlib loads OpenSSL, ~3 ms of the runtime's start-up
    from _sha256 import sha256 as _sha256
except ImportError:  # pragma: no cover - Pythons built without it
    from hashlib import sha256 as _sha256


def _action(seccomp, name: str, errno_ret: int | None) -> int:
    simple = {"SCMP_ACT_ALLOW": seccomp.ALLOW, "SCMP_ACT_KILL": seccomp.KILL,
              "SCMP_ACT_KILL_THREAD": seccomp.KILL, "SCMP_ACT_KILL_PROCESS": seccomp.KILL_PROCESS,
              "SCMP_ACT_TRAP": seccomp.TRAP, "SCMP_ACT_LOG": seccomp.LOG}
    if name in simple:
        return simple[name]
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return seccomp.TRACE(EPERM if errno_ret is None else errno_ret)
    raise ContainerError(f"linux.seccomp: unknown action {name}")


def compile_bpf(section: dict) -> bytes:
    """Compile an OCI seccomp section to a classic BPF program (sock_filter array)."""
    import pyseccomp as seccomp  # only when compiling: the cached path never imports it

    default = _action(seccomp, section["defaultAction"], section.get("defaultErrnoRet"))
    flt = seccomp.SyscallFilter(default)
    native = seccomp.system_arch()
    for arch in section.get("architectures") or []:
        if arch not in ARCHES:
            raise ContainerError(f"linux.seccomp.architectures: unsupported {arch}")
        value = getattr(seccomp.Arch, ARCHES[arch])
        if value != native:
            flt.add_arch(value)
    for i, rule in enumerate(section.get("syscalls") or []):
        action = _action(seccomp, rule["action"], rule.get("errnoRet"))
        if action == default:
            continue  # libseccomp refuses rules that repeat the default action
        args = [seccomp.Arg(a["index"], getattr(seccomp, OPS[a["op"]]), a.get("value", 0),
                            a.get("valueTwo", 0)) for a in rule.get("args") or []]
        indexes = [a["index"] for a in rule.get("args") or []]
        # libseccomp refuses two conditions on one argument in a rule (EINVAL); runc then
        # adds a rule per condition (any of them matches), and so does this runtime
        groups = [[arg] for arg in args] if len(set(indexes)) < len(indexes) else [args]
        for name in rule["names"]:
            try:
                for conditions in groups:
                    flt.add_rule(action, name, *conditions)
            except ValueError:
                continue  # a syscall this architecture does not have (runc skips it too)
            except OSError as exc:
                raise ContainerError(f"linux.seccomp.syscalls[{i}] ({name}): "
                                     f"{exc.strerror or exc}") from exc
    import tempfile

    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


COMPILER = 2  # this module's way of compiling: one more when compile_bpf changes a program
LIBSECCOMP = ("/lib/x86_64-linux-gnu/libseccomp.so.2", "/usr/lib/x86_64-linux-gnu/libseccomp.so.2",
              "/lib/aarch64-linux-gnu/libseccomp.so.2", "/usr/lib64/libseccomp.so.2",
              "/usr/lib/libseccomp.so.2")


def compiler_identity() -> str:
    """What a cached program depends on beside its section: this compiler and libseccomp's
    version (the shared library's real name, libseccomp.so.2.5.4: one readlink, no import)."""
    for path in LIBSECCOMP:
        if os.path.exists(path):
            return f"{COMPILER}:{os.path.basename(os.path.realpath(path))}"
    return f"{COMPILER}:libseccomp-unknown"


def cached_bpf(section: dict, cache_dir: str | os.PathLike[str]) -> bytes:
    """The compiled program for *section*, compiled once per distinct section, compiler and
    libseccomp (a program an older compiler or another libseccomp made is not reused)."""
    key = _sha256(marshal.dumps((compiler_identity(), section))).hexdigest()  # json: ~6 ms
    path = os.path.join(cache_dir, f"{key}.bpf")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        pass
    bpf = compile_bpf(section)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(bpf)
    os.rename(tmp, path)
    return bpf
