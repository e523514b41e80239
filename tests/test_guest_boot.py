"""The image boots: initramfs → virtio modules → ext4 root → guest init → guest agent.

QEMU under TCG (software emulation), exactly as the VM driver will run it on our hosts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from image.build import ImageArtifacts
from tests.guest_boot import GuestAgent, booted, wait_for_line

pytestmark = pytest.mark.slow  # every test boots QEMU


def test_tiny_image_boots_to_the_guest_init(tiny_image: ImageArtifacts, tmp_path: Path) -> None:
    with booted(tiny_image, tmp_path) as (serial, _):
        # busybox only: no qemu-ga in the tiny image, and the init says so after starting
        console = wait_for_line(serial, "vmvc-guest: no-agent", 90)
    assert "vmvc-initramfs: handing over to /usr/local/sbin/vmvc-init" in console
    assert "vmvc-guest: init-started" in console


def test_missing_init_powers_off_with_a_message(tiny_image: ImageArtifacts,
                                                tmp_path: Path) -> None:
    with booted(tiny_image, tmp_path, extra_append="vmvc.init=/no/such/init") as (serial, _):
        console = wait_for_line(serial, "reboot: Power down", 90)
    assert "vmvc-initramfs: error: no executable /no/such/init on /dev/vda" in console


def test_full_image_runs_the_guest_agent(full_image: ImageArtifacts, tmp_path: Path) -> None:
    import time

    with booted(full_image, tmp_path, agent=True) as (serial, sock):
        assert sock is not None
        deadline = time.monotonic() + 120
        agent = GuestAgent(sock, deadline)
        try:
            agent.sync(deadline)
            code, out = agent.run(["/bin/cat", "/.vmvc/rootfs.json"])
            assert code == 0
            assert json.loads(out)["digest"] == full_image.digest
            tools = "sysbench fio stress-ng iperf3 redis-server redis-cli busybox"
            code, out = agent.run(["/bin/sh", "-c", f"for t in {tools}; do command -v $t; done"])
            assert code == 0, out
            assert len(out.split()) == len(tools.split()), out
            code, out = agent.run(["/bin/cat", "/proc/1/cmdline"])
            assert code == 0 and "/usr/local/sbin/vmvc-init" in out
        finally:
            agent.close()
    assert "vmvc-guest: init-started" in serial.read_text(errors="replace")
