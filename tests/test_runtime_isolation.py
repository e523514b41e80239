"""Isolation audit from inside a container (the same tests run against runc and crun with
OCI_RUNTIME=runc|crun): what the workload sees, and what it cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.oci_runtime import BUILTIN, OciRuntime, make_config, new_id, write_bundle

AUDIT = r"""
echo "pid1=$(cat /proc/1/cmdline | tr '\0' ' ')"
echo "pids=$(ls /proc | grep -c '^[0-9][0-9]*$')"
echo "links=$(ls /sys/class/net | tr '\n' ' ')"
echo "hostname=$(hostname)"
mount -t tmpfs none /tmp 2>/dev/null && echo "mount=allowed" || echo "mount=denied"
echo "keys=$(wc -c < /proc/keys)"
echo "timer_list=$(wc -c < /proc/timer_list)"
[ -c /proc/keys ] && echo "keys_node=null-device"
(echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo procsys=writable || echo procsys=readonly
grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\t ' | tr ':' '='
mknod /dev/vmvc-blk b 7 0 2>/dev/null && echo "mknod=allowed" || echo "mknod=denied"
(echo x > /vmvc-root-write) 2>/dev/null && echo "rootfs=writable" || echo "rootfs=readonly"
grep -c . /proc/self/uid_map | sed 's/^/uidmap_lines=/'
ls /dev | tr '\n' ' ' | sed 's/^/dev=/'; echo
echo "cgroups=$(cut -d: -f3 /proc/self/cgroup | sort -u | tr '\n' ' ')"
echo "fds=$(ls /proc/$$/fd | tr '\n' ' ')"
"""


def audit(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture
def oci(tmp_path: Path) -> OciRuntime:
    return OciRuntime(tmp_path / "state")


def test_container_sees_only_itself(oci: OciRuntime, busybox_rootfs: Path,
                                    tmp_path: Path) -> None:
    config = make_config(busybox_rootfs, ["/bin/sh", "-c", AUDIT])
    config["hostname"] = "audited"
    proc = oci("run", "--bundle", str(write_bundle(tmp_path / "b", config)), new_id())
    assert proc.returncode == 0, proc.stderr
    facts = audit(proc.stdout)
    assert facts["pid1"].startswith("/bin/sh -c")  # PID 1 is the workload itself
    assert int(facts["pids"]) <= 4  # the shell and its pipeline: no host process visible
    assert facts["links"].split() == ["lo"]
    assert facts["hostname"] == "audited"
    assert facts["mount"] == "denied"  # no CAP_SYS_ADMIN
    assert facts["keys"] == "0" and facts["timer_list"] == "0"  # masked
    assert facts["keys_node"] == "null-device"  # by /dev/null, as runc masks files
    assert facts["procsys"] == "readonly"
    assert facts["Seccomp"] == "2" and facts["NoNewPrivs"] == "1"
    assert facts["mknod"] == "denied"
    assert facts["rootfs"] == "readonly"
    # stdio, and 3: the pipe of the $(...) doing the listing; nothing of the host
    assert set(facts["fds"].split()) <= {"0", "1", "2", "3"}
    assert facts["cgroups"].split() == ["/"]  # its own cgroup namespace, rooted at its cgroup
    assert set(facts["dev"].split()) >= {"null", "zero", "full", "random", "urandom", "tty",
                                         "pts", "shm", "mqueue", "ptmx"}


def test_loopback_is_up_in_none_mode(oci: OciRuntime, busybox_rootfs: Path,
                                     tmp_path: Path) -> None:
    config = make_config(busybox_rootfs, ["/bin/sh", "-c", "cat /sys/class/net/lo/operstate; "
                                          "cat /sys/class/net/lo/flags"])
    proc = oci("run", "--bundle", str(write_bundle(tmp_path / "b", config)), new_id())
    assert proc.returncode == 0, proc.stderr
    flags = int(proc.stdout.split()[-1], 16)
    assert flags & 1  # IFF_UP


@pytest.mark.skipif(not BUILTIN, reason="image-backed overlay roots are vmvc-runtime's")
def test_image_layers_are_shared_and_never_written(tiny_image, tmp_path: Path) -> None:
    from runtime.container import Runtime
    from runtime.oci_image import read_manifest

    data = tmp_path / "data"
    rt = Runtime(root=tmp_path / "state", data=data)
    config = make_config(Path("rootfs"), ["/bin/sh", "-c", "echo changed > /etc/hostname; "
                                          "mkdir -p /newdir; cat /etc/hostname"])
    config["root"]["readonly"] = False
    first, second = new_id(), new_id()
    for cid in (first, second):
        rt.create(cid, tmp_path, config, image=tiny_image.oci_layout,
                  stdio=(0, _devnull(), 2))
        rt.start(cid)
        assert rt.wait(cid) == 0
    digest = read_manifest(tiny_image.oci_layout).layers[0]["digest"].split(":")[1]
    lower = data / "layers" / digest
    assert (lower / "etc/hostname").read_text() == "vmvc\n"  # the image is untouched
    assert not (lower / "newdir").exists()
    for cid in (first, second):  # each container wrote its own upper dir
        assert (data / "containers" / cid / "upper/etc/hostname").read_text() == "changed\n"
        rt.delete(cid)
        assert not (data / "containers" / cid).exists()


def _devnull() -> int:
    import os

    return os.open(os.devnull, os.O_WRONLY)
