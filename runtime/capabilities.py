"""Linux capabilities by name, and the five sets a container process gets."""

from __future__ import annotations

TYPE_CHECKING = False  # annotations only: collections.abc costs ~3 ms of every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NUMBER = {name: number for number, name in enumerate(CAPABILITIES)}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def last_cap(in_bounding: Callable[[int], bool | None]) -> int:
    """The highest capability this kernel knows, probed with PR_CAPBSET_READ
    (*in_bounding* returns None for a number the kernel does not know). Never read from
    /proc/sys/kernel/cap_last_cap: inside the container that file is the image's to fake,
    and a fake -1 would leave every capability in the bounding set."""
    number = len(CAPABILITIES) - 1
    while in_bounding(number + 1) is not None:
        number += 1
    while number > 0 and in_bounding(number) is None:
        number -= 1
    return number


def mask(names: list[str]) -> int:
    value = 0
    for name in names:
        value |= 1 << NUMBER[name]
    return value
