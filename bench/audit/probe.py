"""The probe run inside an instance: plain facts as ``key=value`` lines, nothing judged
(judge.py compares them with the host's). Its arguments: a token, the port of the host's
listener, and the host's root mount (``major:minor root``). It only reads, except four
harmless attempts that show what the instance may really do:

- ``: >> /proc/sys/kernel/core_pattern`` opens the host-wide sysctl for writing and writes
  nothing (the classic escape is writing it; opening is where the kernel says no);
- ``busybox insmod /bin/busybox`` hands the kernel a file that is no module: the kernel
  checks the capability (and seccomp the call) before the format, so "invalid module
  format" means it would have taken a real one, and nothing is ever loaded;
- ``busybox nc`` to the harness's listener on 127.0.0.1 (loopback: the host's own);
- a device read (8 KiB, one record of the kernel log): a block device already in /dev,
  else a node made with mknod in a scratch dir and removed at once, of the host's root disk
  (its major:minor, given by the harness), then of /dev/kmsg (1:11). Reading is the attack
  (a disk read bypasses every file permission; the host's kernel log is not the
  instance's); what was read is thrown away.

The marker process is searched as ``marke[r]``: the probe's and grep's own command lines
hold the pattern, never the name, so neither finds itself.
"""

from __future__ import annotations

PROBE = r"""
token=$1 port=$2 host_root=$3
say() { printf '%s=%s\n' "$1" "$2"; }
say boot_id "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
say kernel "$(uname -r) $(uname -v)"
for ns in pid mnt net uts user; do say "ns_$ns" "$(readlink /proc/self/ns/$ns 2>/dev/null)"; done
say hostname "$(uname -n)"
say uid "$(id -u)"
say uid_map "$(head -n 1 /proc/self/uid_map 2>/dev/null | tr -s ' \t' '  ' | sed 's/^ //')"
while IFS=: read -r key value; do
  case $key in CapEff|Seccomp|NoNewPrivs) say "$key" "$(echo $value)";; esac
done < /proc/self/status
if [ -r /proc/$$/status ]; then say proc_visible yes; else say proc_visible no; fi
if grep -qs "vmvc-audit-marke[r]-$token" /proc/[0-9]*/cmdline; then
  say host_pid_seen yes; else say host_pid_seen no; fi
say mounts "$(wc -l < /proc/self/mountinfo)"
say root_mount "$(awk '$5 == "/" { seen = $3 " " $4 } END { print seen }' /proc/self/mountinfo)"
say host_root_at "$(awk -v r="$host_root" '($3 " " $4) == r { printf "%s ", $5 }' \
  /proc/self/mountinfo)"
extra=$(find /dev \( -type b -o -type c \) 2>/dev/null \
  | grep -vE '^/dev/(null|zero|full|random|urandom|tty|console|ptmx|pts/[0-9]+|pts/ptmx)$')
say devices "$(printf '%s\n' "$extra" | grep -c .) $(echo $extra | cut -d' ' -f1-4)"
dev=${host_root%% *} readable="" made=""
read_one() { [ -n "$(dd if="$1" bs=8192 count=1 2>/dev/null | head -c 1)" ]; }
for node in $(find /dev -type b 2>/dev/null | head -n 20); do
  read_one "$node" && { readable=$node; break; }
done
for kind in "b ${dev%%:*} ${dev##*:} the host's root disk" "c 1 11 the kernel's log"; do
  [ -n "$readable" ] && break
  set -- $kind
  for dir in /dev/shm /tmp /var/tmp /run; do
    node=$dir/.vmvc-audit-$token
    mknod "$node" "$1" "$2" "$3" 2>/dev/null || continue
    made="$made $dir"
    read_one "$node" && readable="$node, made with mknod $1 $2:$3 (${kind#* * * })"
    rm -f "$node"
    [ -n "$readable" ] && break
  done
done
say device_read "${readable:-none}"
say mknod_in "${made:- none}"
if ( : >> /proc/sys/kernel/core_pattern ) 2>/dev/null; then w=yes; else w=no; fi
say proc_sys_writable "$w"
say insmod "$(busybox insmod /bin/busybox 2>&1 | head -n 1)"
say nc "$(echo "$token" | busybox nc -w 2 127.0.0.1 "$port" 2>&1 | head -n 1)"
say done yes
"""


def parse_probe(output: str) -> dict[str, str]:
    """The probe's ``key=value`` lines (a later line wins; other lines are ignored)."""
    facts: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.replace("_", "").isalnum():
            facts[key] = value.strip()
    return facts
