#!/usr/bin/env python3
"""Benchmark of VM boot: through libvirt (the VM driver) against QEMU started directly.

Target (issue 4): boot to agent-ready through libvirt <= 1.10 x the same guest booted by
QEMU directly to the same marker, the two alternated in one run. The marker: the guest
opening the agent's virtio-serial port, as QEMU reports it (VSERPORT_CHANGE, which libvirt
turns into the agent lifecycle event the driver waits for); also reported, the first
command done through the agent (guest-exec of /bin/true). Times run from the request to
start, on the host's monotonic clock; libvirt's per-phase times are reported too.
Same image, kernel, initramfs, q35 machine, accelerator (TCG here), memory, vCPUs and
devices (virtio disk, virtio-serial with the agent and marker ports, balloon, serial file).
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

from image.build import build_image  # noqa: E402
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


def wait_for_agent_port(qmp_path: Path, proc: subprocess.Popen, deadline: float) -> None:
    """Wait for QEMU's VSERPORT_CHANGE event of the agent port opening: the signal libvirt
    turns into its agent lifecycle event CONNECTED."""
    while not qmp_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("QEMU did not start its QMP socket")
        time.sleep(0.002)
    with socket.socket(socket.AF_UNIX) as qmp:
        qmp.connect(str(qmp_path))
        qmp.settimeout(0.1)
        qmp.sendall(b'{"execute": "qmp_capabilities"}\n')
        buffer = b""
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the agent port never opened")
            try:
                chunk = qmp.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError("QMP socket closed")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line) if line.strip() else {}
                data = event.get("data", {})
                if event.get("event") == "VSERPORT_CHANGE" and data.get("id") == "agentport" \
                        and data.get("open"):
                    return


def direct_boot(image, memory_mib: int, accel: str, work: Path,
                timeout: float = 180.0) -> tuple[float, float]:
    """QEMU alone, the same guest: seconds from spawn to the agent port open (agent-ready,
    by QEMU's own event) and to a guest-exec'd /bin/true done (the driver's request)."""
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
            "-device", "virtserialport,chardev=ga,name=org.qemu.guest_agent.0,id=agentport",
            "-qmp", f"unix:{work / 'qmp.sock'},server=on,wait=off",
            "-chardev", f"socket,id=marker,path={work / 'marker.sock'},server=on,wait=off",
            "-device", "virtserialport,chardev=marker,name=org.vmvc.marker.0",
            "-device", "virtio-balloon-pci"]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_agent_port(work / "qmp.sock", proc, start + timeout)
        agent_ready = time.monotonic() - start
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
        return agent_ready, seconds
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for path in (overlay, sock_path, work / "marker.sock", work / "qmp.sock"):
            path.unlink(missing_ok=True)


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
    libvirt_ready: list[float] = []
    direct_ready: list[float] = []
    phases: dict[str, list[float]] = {p: [] for p in (*PHASES, "create_call")}
    destroy, shutdown = [], []
    try:
        for i in range(args.rounds):
            if i % 2:  # alternate which side goes first
                ready, done = direct_boot(image, args.memory, accel, work)
                direct_ready.append(ready)
                direct_times.append(done)
            with boot(config) as vm:
                for name, value in vm.phases.as_dict().items():
                    phases[name].append(value)
                libvirt_times.append(vm.phases.first_command_done)
                libvirt_ready.append(vm.phases.agent_connected)
                if i % 2:
                    shutdown.append(vm.shutdown())
                else:
                    destroy.append(vm.destroy())
            if not i % 2:
                ready, done = direct_boot(image, args.memory, accel, work)
                direct_ready.append(ready)
                direct_times.append(done)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"accelerator: {accel}{' (emulated)' if accel == 'tcg' else ''}; "
          f"{args.rounds} rounds, alternated")
    for what, lib, direct in (("agent ready (agent port opened)", libvirt_ready, direct_ready),
                              ("first agent command done", libvirt_times, direct_times)):
        med_l, med_d = statistics.median(lib), statistics.median(direct)
        print(f"boot to {what}: libvirt {med_l:.2f} s, QEMU direct {med_d:.2f} s, "
              f"ratio {med_l / med_d:.3f}")
    print("target: agent ready through libvirt <= 1.10 x QEMU direct")
    for name, values in phases.items():
        print(f"  phase {name:20} median {statistics.median(values):.3f} s")
    print(f"  ACPI shutdown → gone: median {statistics.median(shutdown):.2f} s")
    print(f"  destroy → gone: median {statistics.median(destroy):.3f} s")


if __name__ == "__main__":
    main()
