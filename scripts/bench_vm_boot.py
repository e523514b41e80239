#!/usr/bin/env python3
"""Benchmark of VM boot: through libvirt (the VM driver) against QEMU started directly.

Target (issue 4): boot to agent-ready through libvirt <= 1.10 x the same guest booted by
QEMU directly to the same marker, the two alternated in one run. The marker here is the
first command done through the guest agent (guest-exec of /bin/true), measured from the
request to start on the host's monotonic clock; libvirt's per-phase times are reported too.
Same image, kernel, initramfs, q35 machine, accelerator (TCG here), memory and vCPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.image.build import build_image  # noqa: E402
from vmdriver.agent import POLL_FIRST, POLL_MAX  # noqa: E402
from vmdriver.vm import PHASES, VmConfig, boot, choose_accelerator  # noqa: E402


class AgentSocket:
    """The guest agent's protocol on QEMU's socket: one request, one reply line."""

    def __init__(self, path: Path, proc: subprocess.Popen, deadline: float) -> None:
        self.proc, self.deadline = proc, deadline
        while not path.exists():
            self._check()
            time.sleep(0.002)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.buffer = b""

    def _check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"QEMU exited with {self.proc.returncode}")
        if time.monotonic() > self.deadline:
            raise TimeoutError("direct boot timed out")

    def request(self, command: str, **arguments: object) -> object:
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        self.sock.settimeout(0.1)
        while b"\n" not in self.buffer:
            self._check()
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError("agent socket closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)["return"]


def direct_boot(image, memory_mib: int, accel: str, work: Path,
                timeout: float = 180.0) -> float:
    """QEMU alone, the same guest: seconds from spawn to a guest-exec'd /bin/true done,
    with the driver's own request (busybox setsid /bin/true) and polling."""
    overlay, sock_path = work / "direct.qcow2", work / "agent.sock"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(image.disk), str(overlay)], check=True)
    argv = ["setpriv", "--pdeathsig", "KILL", "--",
            "qemu-system-x86_64", "-machine", "q35", "-accel", accel, "-m", str(memory_mib),
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            *(["-cpu", "host"] if accel == "kvm" else []),
            "-kernel", str(image.kernel), "-initrd", str(image.initramfs),
            "-append", "console=ttyS0 panic=-1", "-serial", f"file:{work / 'serial.log'}",
            "-drive", f"file={overlay},if=virtio,format=qcow2,cache=none,aio=native",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=ga,path={sock_path},server=on,wait=off",
            "-device", "virtserialport,chardev=ga,name=org.qemu.guest_agent.0",
            "-device", "virtio-balloon-pci"]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        agent_socket = AgentSocket(sock_path, proc, start + timeout)
        # one guest-sync, answered once the guest's agent opened its port (no backlog)
        if agent_socket.request("guest-sync", id=1) != 1:
            raise RuntimeError("guest-sync answered with another id")
        pid = agent_socket.request("guest-exec", path="/bin/busybox",
                                   arg=["setsid", "/bin/true"])["pid"]
        delay = POLL_FIRST
        while not agent_socket.request("guest-exec-status", pid=pid)["exited"]:
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX)
        seconds = time.monotonic() - start
        agent_socket.sock.close()
        return seconds
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        overlay.unlink(missing_ok=True)
        sock_path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--memory", type=int, default=512)
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (shutdown and destroy alternate)")
    image = build_image("full")
    probe = VmConfig(kernel=image.kernel, initramfs=image.initramfs, disk=image.disk)
    accel = choose_accelerator(probe).accelerator  # decided once, used by both sides
    config = VmConfig(kernel=image.kernel, initramfs=image.initramfs, disk=image.disk,
                      memory_mib=args.memory, accelerator=accel)
    work = Path(tempfile.mkdtemp(prefix="vmvc-bench-vm-"))
    libvirt_times: list[float] = []
    direct_times: list[float] = []
    phases: dict[str, list[float]] = {p: [] for p in (*PHASES, "create_call")}
    destroy, shutdown = [], []
    try:
        for i in range(args.rounds):
            if i % 2:  # alternate which side goes first
                direct_times.append(direct_boot(image, args.memory, accel, work))
            with boot(config) as vm:
                for name, value in vm.phases.as_dict().items():
                    phases[name].append(value)
                libvirt_times.append(vm.phases.first_command_done)
                if i % 2:
                    shutdown.append(vm.shutdown())
                else:
                    destroy.append(vm.destroy())
            if not i % 2:
                direct_times.append(direct_boot(image, args.memory, accel, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med_l, med_d = statistics.median(libvirt_times), statistics.median(direct_times)
    print(f"accelerator: {accel}{' (emulated)' if accel == 'tcg' else ''}; "
          f"{args.rounds} rounds, alternated")
    print(f"libvirt boot to first agent command: median {med_l:.2f} s")
    print(f"direct QEMU boot to first agent command: median {med_d:.2f} s")
    print(f"ratio libvirt/direct: {med_l / med_d:.3f} (target <= 1.10)")
    for name, values in phases.items():
        print(f"  phase {name:20} median {statistics.median(values):.3f} s")
    print(f"  ACPI shutdown → gone: median {statistics.median(shutdown):.2f} s")
    print(f"  destroy → gone: median {statistics.median(destroy):.3f} s")


if __name__ == "__main__":
    main()
