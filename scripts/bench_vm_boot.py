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
from vmdriver.vm import PHASES, VmConfig, boot, choose_accelerator  # noqa: E402


def agent_request(sock: socket.socket, buffer: bytearray, command: dict,
                  timeout: float) -> dict:
    sock.settimeout(timeout)
    sock.sendall(json.dumps(command).encode() + b"\n")
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("agent socket closed")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def direct_boot(image, memory_mib: int, accel: str, work: Path) -> float:
    """QEMU alone, the same guest: seconds from spawn to a guest-exec'd /bin/true done."""
    overlay, sock_path = work / "direct.qcow2", work / "agent.sock"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(image.disk), str(overlay)], check=True)
    argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", accel, "-m", str(memory_mib),
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
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
        while not sock_path.exists():
            time.sleep(0.002)
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(sock_path))
        buffer = bytearray()
        token = 0
        while True:  # the agent answers once the guest started it
            token += 1
            sock.sendall(json.dumps({"execute": "guest-sync", "arguments": {"id": token}})
                         .encode() + b"\n")
            try:
                sock.settimeout(0.05)
                while b"\n" not in buffer:
                    buffer += sock.recv(65536)
                replies = bytes(buffer).split(b"\n")
                buffer[:] = replies[-1]
                if any(json.loads(r).get("return") == token for r in replies[:-1] if r):
                    break
            except TimeoutError:
                continue
        pid = agent_request(sock, buffer, {"execute": "guest-exec", "arguments": {
            "path": "/bin/true"}}, 10)["return"]["pid"]
        while not agent_request(sock, buffer, {"execute": "guest-exec-status",
                                              "arguments": {"pid": pid}}, 10)["return"]["exited"]:
            time.sleep(0.005)
        seconds = time.monotonic() - start
        sock.close()
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
    image = build_image("full")
    config = VmConfig(kernel=image.kernel, initramfs=image.initramfs, disk=image.disk,
                      memory_mib=args.memory)
    accel = choose_accelerator(config).accelerator
    work = Path(tempfile.mkdtemp(prefix="vmvc-bench-vm-"))
    libvirt_times: list[float] = []
    direct_times: list[float] = []
    phases: dict[str, list[float]] = {p: [] for p in (*PHASES, "create_call")}
    destroy, shutdown = [], []
    try:
        for i in range(args.rounds):
            direct_times.append(direct_boot(image, args.memory, accel, work))
            vm = boot(config)
            for name, value in vm.phases.as_dict().items():
                phases[name].append(value)
            libvirt_times.append(vm.phases.first_command_done)
            if i % 2:
                shutdown.append(vm.shutdown())
            else:
                destroy.append(vm.destroy())
            vm.close()
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
