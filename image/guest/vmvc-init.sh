#!/bin/sh
# vmvc guest init: PID 1 of a VM booted from the vmvc image (installed as
# /usr/local/sbin/vmvc-init). Mounts the API file systems, tells the host that init started
# (a line on the org.vmvc.marker.0 virtio-serial port, timestamped by the host on arrival,
# and on the console), then runs the QEMU guest agent, restarting it should it die, and
# reaps every orphan meanwhile. SIGTERM or SIGUSR2 powers the VM off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
bb=busybox

$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb grep -qs ' /dev ' /proc/mounts || $bb mount -t devtmpfs devtmpfs /dev
$bb mkdir -p /dev/pts /dev/shm /dev/mqueue
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$bb mount -t mqueue mqueue /dev/mqueue
$bb mount -t tmpfs -o mode=755 tmpfs /run
$bb mount -t tmpfs -o mode=1777 tmpfs /tmp
if [ -d /sys/fs/cgroup ]; then $bb mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null; fi
echo vmvc-guest > /proc/sys/kernel/hostname

# No udev here: name the virtio-serial ports the way udev's rule would. Ports register
# asynchronously after the driver loads, so wait (at most 3 s) for the first one when a
# virtio-serial device exists, and name them again whenever the agent is looked for.
name_ports() {
  $bb mkdir -p /dev/virtio-ports
  for port in /sys/class/virtio-ports/*; do
    [ -r "$port/name" ] || continue
    $bb ln -sf "../${port##*/}" "/dev/virtio-ports/$($bb cat "$port/name")"
  done
}
ports_named() {  # every virtio-serial port registered and named (names arrive late)
  [ -n "$($bb ls /sys/class/virtio-ports 2>/dev/null)" ] || return 1
  for port in /sys/class/virtio-ports/*; do
    [ -s "$port/name" ] || return 1
  done
}
if [ -n "$($bb ls /sys/bus/virtio/drivers/virtio_console 2>/dev/null | $bb grep virtio)" ]; then
  tries=0
  until ports_named || [ $tries -ge 60 ]; do  # at most 3 s
    tries=$((tries + 1))
    $bb sleep 0.05
  done
fi
name_ports
$bb ip link set lo up

# Lines to the host go through one writer, in order. A write to a port nobody listens on
# blocks (the host may connect late), so the writer runs in the background, never in PID 1;
# and a virtio-serial port takes one opener at a time (a second open is EBUSY), so there is
# only one. PID 1 hands it lines through a FIFO it holds open read-write: a short line never
# blocks, and the writer never sees end-of-file.
marker_port=/dev/virtio-ports/org.vmvc.marker.0
if [ -c "$marker_port" ] && $bb mkfifo /run/vmvc-marker.fifo; then
  exec 3<> /run/vmvc-marker.fifo
  (
    while read -r line; do
      echo "$line" > "$marker_port"
    done < /run/vmvc-marker.fifo
  ) 2>/dev/null &
fi
mark() {
  echo "vmvc-guest: $1" > /dev/console
  [ -p /run/vmvc-marker.fifo ] && echo "$1" >&3
}
trap 'mark poweroff; $bb sync; $bb poweroff -f' TERM USR2
mark init-started
# the suite's bridge, when the host gave this VM a NIC: vmvc.ip=ADDR/PREFIX on the kernel
# command line, set before the agent starts (reachable once it connects); no default route
for word in $($bb cat /proc/cmdline); do
  case "$word" in vmvc.ip=*) vmvc_ip=${word#vmvc.ip=} ;; esac
done
if [ -n "$vmvc_ip" ]; then
  if $bb ip addr add "$vmvc_ip" dev eth0 && $bb ip link set eth0 up; then
    mark network-up
  else
    mark network-failed
  fi
fi
# the ACPI power button (virsh shutdown) → acpid → USR2 to this init → poweroff
$bb acpid -c /usr/local/share/vmvc/acpi -l /run/acpid.log -p /run/acpid.pid 2>/dev/null

agent_port=/dev/virtio-ports/org.qemu.guest_agent.0
if ! command -v qemu-ga > /dev/null || [ ! -d /sys/class/virtio-ports ]; then
  mark "no-agent"
  while :; do
    $bb sleep 3600 &
    wait $!  # orphans are reaped meanwhile
  done
fi
while :; do
  name_ports
  if [ -c "$agent_port" ]; then
    qemu-ga --method=virtio-serial --path="$agent_port" &
    wait $!  # returns when the agent ends (it is restarted); orphans are reaped meanwhile
  fi
  $bb sleep 0.05
done
