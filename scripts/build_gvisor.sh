#!/usr/bin/env bash
# gVisor's runsc for the gvisor backend, built offline from Debian's source package
# golang-gvisor-gvisor-dev (2022-12) with Debian's Go, in GOPATH mode (no module download:
# every dependency is a Debian golang-*-dev package under /usr/share/gocode).
#
# The package's vdso.so is a 1-byte placeholder (its build rule is Bazel's, not shipped), and
# runsc parses it at start-up: every command would panic "failed to parse vdso.so as ELF
# file". So it is built here from the package's vdso/*.cc with g++ and gold, linked by our
# own scripts/gvisor-vdso.lds (Debian ships none), and put in the tree before `go build`.
#
# Installs $RUNSC (bench/backends/gvisor.py runs it from there). The build is cached under
# $CACHE/runsc-<hash of its inputs: the Debian packages' versions, this script, the linker
# script>, so a second run only checks. Exits non-zero with one line on stderr when it cannot
# build; scripts/setup.sh goes on (the backend then skips, saying runsc is not built).
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
RUNSC=/usr/local/lib/vmvc/runsc
CACHE=/var/cache/vmvc
SRC=/usr/share/gocode/src/gvisor.dev/gvisor
LDS=$here/gvisor-vdso.lds
PACKAGES=(golang-go golang-gvisor-gvisor-dev g++ binutils)
LOG=/var/log/vmvc-build-gvisor.log
fail() { printf 'build_gvisor: %s\n' "$*" >&2; exit 1; }

check_packages() {  # scripts/setup.sh installs them (its PACKAGES)
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] || fail "not installed: ${missing[*]} (make setup installs them)"
}

inputs_hash() {  # every Go package (gVisor's source and its dependencies), the toolchain, us
  { dpkg-query -W -f='${Package} ${Version}\n' 'golang-*' g++ binutils | sort
    sha256sum "$here/build_gvisor.sh" "$LDS" | cut -d' ' -f1; } | sha256sum | cut -c1-16
}

build_vdso() {  # $1: the output file. Flags as gVisor's own vdso/BUILD: no libc, no stack
  # protector (nothing to link it against), position independent, symbols bound locally
  g++ -I"$SRC" -O2 -std=c++11 -m64 -fPIC -fno-stack-protector -fno-builtin -fno-exceptions \
    -fno-rtti -shared -nostdlib -fuse-ld=gold -Wl,--eh-frame-hdr \
    -Wl,-soname=linux-vdso.so.1 -Wl,--hash-style=sysv -Wl,--no-undefined -Wl,-Bsymbolic \
    -Wl,-z,max-page-size=4096 -Wl,-z,common-page-size=4096 -Wl,-T,"$LDS" \
    -o "$1" "$SRC/vdso/vdso.cc" "$SRC/vdso/vdso_time.cc"
}

build_runsc() {  # $1: a scratch dir, $2: the output binary. Each step checked: set -e does
  # not act in a function called as `build_runsc || fail`
  local gopath=$1/gopath version
  mkdir -p "$gopath/src/gvisor.dev" || return
  cp -a "$SRC" "$gopath/src/gvisor.dev/" || return  # writable: the vdso goes into it
  build_vdso "$gopath/src/gvisor.dev/gvisor/pkg/sentry/loader/vdsodata/vdso.so" || return
  version=$(dpkg-query -W -f='${Version}' golang-gvisor-gvisor-dev) || return
  (cd "$gopath/src/gvisor.dev/gvisor" &&
    env GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 GOPATH="$gopath:/usr/share/gocode" \
      GOCACHE="$1/gocache" HOME="$1" \
      go build -trimpath -ldflags "-X main.version=debian-$version" -o "$2" \
      gvisor.dev/gvisor/runsc)
}

check_packages
[ -f "$LDS" ] || fail "$LDS is missing"
[ -d "$SRC/vdso" ] || fail "$SRC/vdso is missing (golang-gvisor-gvisor-dev changed?)"
hash=$(inputs_hash)
cached=$CACHE/runsc-$hash/runsc
if [ ! -x "$cached" ]; then
  printf '\033[1m==> %s\033[0m\n' "building runsc from Debian's gVisor source (~1 min; log: $LOG)" >&2
  mkdir -p "$CACHE"
  rm -rf "$CACHE"/build-runsc.*  # a killed build's
  scratch=$(mktemp -d "$CACHE/build-runsc.XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
  build_runsc "$scratch" "$scratch/runsc" >>"$LOG" 2>&1 || fail "building runsc failed (see $LOG)"
  # the vdso is parsed at start-up: a runsc that answers --version has a good one
  "$scratch/runsc" --version >>"$LOG" 2>&1 || fail "the built runsc does not start (see $LOG)"
  rm -rf "$CACHE"/runsc-*  # older builds: their inputs are gone
  mkdir -p "$CACHE/runsc-$hash"
  mv "$scratch/runsc" "$cached"
fi
if ! cmp -s "$cached" "$RUNSC"; then
  mkdir -p "$(dirname "$RUNSC")"
  install -m 0755 "$cached" "$RUNSC.tmp" && mv "$RUNSC.tmp" "$RUNSC"
fi
