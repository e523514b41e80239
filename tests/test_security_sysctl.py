"""Issue 11, item 9: a net.* sysctl that a new network namespace shows writable but that acts
on the whole host is refused, by name, before anything is made.

net.netfilter.nf_hooks_lwtunnel is such a one on this kernel: a fresh netns shows it 0644,
and its handler turns a kernel-wide static key on for good. The attack writes the harmless
value 0 (a no-op on the host) so that the test can run against the old code without
changing anything; what must fail is that the runtime accepts the key at all.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.oci_runtime import BUILTIN, OciRuntime, make_config, new_id, write_bundle

KEY = "net.netfilter.nf_hooks_lwtunnel"
PROC = Path("/proc/sys/net/netfilter/nf_hooks_lwtunnel")

pytestmark = [
    pytest.mark.skipif(not BUILTIN, reason="runc and crun allow every net.* in a new network "
                       "namespace and leave the rest to the kernel, which lets this one through; "
                       "vmvc-runtime is stricter"),
    pytest.mark.skipif(not PROC.exists(), reason="this kernel has no nf_hooks_lwtunnel"),
]


def test_the_key_is_writable_from_a_fresh_network_namespace() -> None:
    """The premise: the kernel does not protect it (checked, never written)."""
    probe = subprocess.run(["unshare", "--net", "--", "test", "-w", str(PROC)], timeout=30,
                           check=False)
    assert probe.returncode == 0


@pytest.mark.parametrize("key", [KEY, "net.netfilter..nf_hooks_lwtunnel",
                                 "net.netfilter/nf_hooks_lwtunnel"])
def test_global_net_sysctl_is_refused(key: str, busybox_rootfs: Path, tmp_path: Path) -> None:
    before = PROC.read_text()
    runtime = OciRuntime(tmp_path / "state")
    config = make_config(busybox_rootfs, ["/bin/true"], sysctl={key: "0"})
    bundle = write_bundle(tmp_path / "bundle", config)
    cid = new_id()
    created = runtime("create", "--bundle", str(bundle), cid)
    if created.returncode == 0:
        runtime("delete", "--force", cid)
    assert created.returncode != 0, f"{key} was accepted"
    assert created.stderr.strip().count("\n") == 0, created.stderr
    assert f"linux.sysctl.{key}" in created.stderr
    assert runtime("list").stdout.split("\n")[1:] in ([], [""])  # no container made
    assert PROC.read_text() == before


def test_namespaced_net_sysctl_still_applies(busybox_rootfs: Path, tmp_path: Path) -> None:
    runtime = OciRuntime(tmp_path / "state")
    config = make_config(busybox_rootfs, ["/bin/cat", "/proc/sys/net/ipv4/ip_forward"],
                         sysctl={"net.ipv4.ip_forward": "1"})
    done = runtime("run", "--bundle", str(write_bundle(tmp_path / "b", config)), new_id())
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr
