#!/bin/sh
# The rootfs content digest of image/digest.py, computed inside a guest with busybox
# alone: the proof that the VM runs the bits the container runs. Prints "sha256:<hex>".
# The root is bind-mounted (not recursively) so mounts on top of it do not count.
set -e
bb=busybox
top=/tmp/vmvc-digest-root
$bb mkdir -p "$top" /tmp/vmvc-digest
$bb mount --bind / "$top"
trap 'cd /; $bb umount "$top"; $bb rm -rf /tmp/vmvc-digest; $bb rmdir "$top"' EXIT
cd "$top"
$bb find . -mindepth 1 \( -path ./lost+found -o -path ./.vmvc -o -path './dev/*' \) -prune \
  -o \( -type d -o -type f -o -type l \) -exec $bb stat -c '%F|%a|%u|%g|%n|%N' {} + \
  > /tmp/vmvc-digest/meta
$bb find . -mindepth 1 \( -path ./lost+found -o -path ./.vmvc -o -path './dev/*' \) -prune \
  -o -type f -exec $bb sha256sum {} + > /tmp/vmvc-digest/sums
$bb awk -F'|' '
  FILENAME ~ /sums$/ { sum[substr($0, 67)] = substr($0, 1, 64); next }
  {
    kind = ($1 == "directory") ? "d" : ($1 == "symbolic link") ? "l" : "f"
    path = substr($5, 2)
    if (kind == "d") payload = "-"
    else if (kind == "f") payload = sum[$5]
    else { target = $6; sub(/^.* -> ./, "", target); sub(/.$/, "", target); payload = target }
    printf "%s\t%s %04d %s %s %s %s\n", path, kind, $2, $3, $4, payload, path
  }' FS='|' /tmp/vmvc-digest/sums FS='|' /tmp/vmvc-digest/meta \
  | LC_ALL=C $bb sort -t "$(printf '\t')" -k1,1 | $bb cut -f2- | $bb sha256sum \
  | $bb awk '{ print "sha256:" $1 }'
