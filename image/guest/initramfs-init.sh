#!/bin/busybox sh
# vmvc initramfs: load the virtio drivers, mount the image's ext4 disk and hand over to the
# guest's own init. Every failure is said on the console and powers the VM off, so a broken
# boot ends instead of hanging. Kernel parameters: vmvc.root=, vmvc.rootflags=, vmvc.init=,
# vmvc.load=MOD[,MOD] (modules loaded only on request, as overlay for containers in the
# guest), and vmvc.probe (stop right here: the KVM probe only needs to see userspace reached).
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "vmvc-initramfs: $*" > /dev/console; }
fail() { say "error: $*"; poweroff -f; sleep 5; }

root=/dev/vda
rootflags=rw
init=/usr/local/sbin/vmvc-init
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vmvc.probe) say "VMVC-PROBE-USERSPACE"; poweroff -f; sleep 5 ;;
    vmvc.root=*) root=${arg#vmvc.root=} ;;
    vmvc.rootflags=*) rootflags=${arg#vmvc.rootflags=} ;;
    vmvc.init=*) init=${arg#vmvc.init=} ;;
    vmvc.load=*) load=${arg#vmvc.load=} ;;
  esac
done

say "started"
for module in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$module" || fail "cannot load $module"
done
for module in $(echo "$load" | tr , ' '); do
  case "$module" in */*|.*) fail "vmvc.load: $module is not a module name" ;; esac
  insmod "/lib/modules/$module.ko" || fail "cannot load $module"
done

tries=0
while [ ! -b "$root" ]; do
  tries=$((tries + 1))
  [ "$tries" -gt 200 ] && fail "root disk $root did not appear"
  sleep 0.05
done
mount -t ext4 -o "$rootflags" "$root" /newroot || fail "cannot mount $root"
[ -x "/newroot$init" ] || fail "no executable $init on $root"
say "handing over to $init"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot "$init"
