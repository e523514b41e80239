#!/usr/bin/env bash
# The benchmark as CI runs it, and as anyone can run it locally: every step of
# .github/workflows/benchmark.yml calls this script and nothing else.
#
#   scripts/ci-bench.sh kvm                      open /dev/kvm to every user (CI runners)
#   scripts/ci-bench.sh bench RUN_DIR            make setup, vmvc run, the HTML report, and
#                                                the Markdown summary (into $GITHUB_STEP_SUMMARY)
#   scripts/ci-bench.sh merge REPORT RUN_DIR...  one report over several runs (a CI matrix)
#
# bench reads VMVC_SUITE (quick), VMVC_BACKENDS and VMVC_WORKLOADS (all), and VMVC_RUN_ARGS
# (extra `vmvc run` options, e.g. "--vm-boots 1"). KVM is used where the probe says it
# works, TCG otherwise; the report says which.
set -euo pipefail
self=$(readlink -f "$0")
[ "$(id -u)" -eq 0 ] || exec sudo -E "$self" "$@"
# paths given are the caller's: made absolute before moving to the repo
args=("${1:-}")
for arg in "${@:2}"; do args+=("$(realpath -m -- "$arg")"); done
set -- "${args[@]}"
cd "$(dirname "$self")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
usage() { echo "usage: $0 kvm | bench RUN_DIR | merge REPORT RUN_DIR..." >&2; exit 2; }

# hand what root made back to the user who ran the job (so artifacts can be uploaded)
give_back() { [ -n "${SUDO_UID:-}" ] && chown -R "$SUDO_UID:$SUDO_GID" "$@" || true; }

summary() {  # append a Markdown file to the job summary when there is one
  [ -n "${GITHUB_STEP_SUMMARY:-}" ] && cat "$1" >> "$GITHUB_STEP_SUMMARY" || true
}

open_kvm() {
  # the usual rule for hosted runners: /dev/kvm is root:kvm 0660 there
  echo 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"' \
    > /etc/udev/rules.d/99-kvm4all.rules
  modprobe kvm 2>/dev/null || true
  if command -v udevadm >/dev/null; then
    udevadm control --reload-rules && udevadm trigger --name-match=kvm || true
  fi
  if [ -e /dev/kvm ]; then
    chmod 0666 /dev/kvm
    say "/dev/kvm: $(ls -l /dev/kvm)"
  else
    say "no /dev/kvm here: VMs will run under TCG (emulated), and the report will say so"
  fi
}

bench() {
  local out=$1 status=0
  local args=(--suite "${VMVC_SUITE:-quick}" --out "$out")
  [ -n "${VMVC_BACKENDS:-}" ] && args+=(--backends "$VMVC_BACKENDS")
  [ -n "${VMVC_WORKLOADS:-}" ] && args+=(--workloads "$VMVC_WORKLOADS")
  # shellcheck disable=SC2206  # extra options, split on purpose
  [ -n "${VMVC_RUN_ARGS:-}" ] && args+=($VMVC_RUN_ARGS)
  make setup
  .venv/bin/vmvc doctor || true
  say "vmvc run ${args[*]}"
  .venv/bin/vmvc run "${args[@]}" || status=$?
  if [ ! -s "$out/results.json" ]; then
    give_back "$out" 2>/dev/null
    exit $((status ? status : 1))
  fi
  .venv/bin/vmvc report "$out"
  .venv/bin/vmvc report "$out" --format md -o "$out/summary.md"
  summary "$out/summary.md"
  give_back "$out"
  # failed benchmarks are in the report and the manifest; the job says so by its status
  exit "$status"
}

merge() {
  local report=$1 runs=() dir
  shift
  for dir in "$@"; do  # a runner whose benchmark failed early uploads no results
    if [ -s "$dir/results.json" ] && [ -s "$dir/manifest.json" ]; then
      runs+=("$dir")
    else
      say "skipping $dir: no results.json or manifest.json"
    fi
  done
  [ ${#runs[@]} -ge 1 ] || { echo "$0: no run dir with results among: $*" >&2; exit 1; }
  set -- "${runs[@]}"
  scripts/setup.sh --venv-only  # rendering needs the venv, not images or libvirt
  mkdir -p "$(dirname "$report")"
  .venv/bin/vmvc report "$@" -o "$report"
  .venv/bin/vmvc report "$@" --format md -o "${report%.html}.md"
  summary "${report%.html}.md"
  give_back "$(dirname "$report")"
}

case "${1:-}" in
  kvm) open_kvm ;;
  bench) [ $# -eq 2 ] || usage; bench "$2" ;;
  merge) [ $# -ge 3 ] || usage; shift; merge "$@" ;;
  *) usage ;;
esac
