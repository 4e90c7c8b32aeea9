#!/usr/bin/env bash
# test-all.sh: the one command that runs every ferryfs test.
#
# Run it as root on a Debian bookworm machine with Go at /usr/local/go:
#
#     sudo scripts/test-all.sh
#
# It installs what is missing (a C compiler, which `go test -race` needs;
# QEMU, a guest kernel and busybox for the VM tests, through
# scripts/e2e-assets.sh), then runs `go vet ./...`, staticcheck and
# govulncheck (scripts/lint.sh) and `go test -race ./...`,
# which include the end-to-end tests of the local FUSE mount (tests/) and of
# real guests (tests/vm). It exits non-zero if any step fails, after printing
# a summary of every step.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root=$(pwd)

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'test-all.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------

if [[ $(id -u) -ne 0 ]]; then
	die "run me as root (sudo scripts/test-all.sh): the mount tests call mount(2) and use /dev/fuse"
fi

if ! command -v go >/dev/null 2>&1; then
	if [[ -x /usr/local/go/bin/go ]]; then
		export PATH="/usr/local/go/bin:$PATH"
	else
		die "no go command in PATH and none at /usr/local/go/bin/go; install Go (see go.mod for the version)"
	fi
fi
# go.mod asks for Go 1.27.3; a machine's own Go (1.26) fetches that release
# from the module proxy when told to, and ignores go.mod's line otherwise.
export GOTOOLCHAIN=go1.27.3

# apt_install PACKAGE... installs Debian packages, running apt-get update once.
apt_updated=
apt_install() {
	if [[ -z $apt_updated ]]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# The race detector needs cgo, and cgo needs a C compiler and libc headers.
if ! command -v gcc >/dev/null 2>&1 || [[ ! -e /usr/include/stdlib.h ]]; then
	log "installing gcc and libc6-dev (needed by go test -race)"
	apt_install gcc libc6-dev
fi

# The mount tests need the FUSE device.
if [[ ! -c /dev/fuse ]]; then
	modprobe fuse 2>/dev/null || true
	[[ -c /dev/fuse ]] || die "/dev/fuse is missing and modprobe fuse did not create it"
fi

# --- QEMU / guest kernel for the virtio-fs end-to-end tests ------------------
# >>> virtio-fs e2e assets (added by the tests/vm helper) >>>
# tests/vm boots QEMU guests over virtio-fs. scripts/e2e-assets.sh installs and
# caches their pieces (QEMU 10 + virtiofsd 1.13 in a trixie chroot, a bookworm
# guest kernel, busybox) under /var/cache/ferryfs-e2e: a minute or two the
# first time, under a second afterwards. The tests run it too; running it here
# first keeps a download failure out of the test output and its time separate.
log "preparing the virtio-fs end-to-end assets (scripts/e2e-assets.sh)"
"$repo_root/scripts/e2e-assets.sh" || die "scripts/e2e-assets.sh failed: the VM tests in tests/vm cannot run"
# <<< virtio-fs e2e assets <<<

# Skipping the mount tests for lack of root or /dev/fuse must fail here.
export FERRYFS_REQUIRE_MOUNT_TESTS=1
export CGO_ENABLED=1

log "go version: $(go version)"
log "kernel: $(uname -r)"

# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------

declare -a step_names=() step_results=() step_times=() step_logs=()
logdir=$(mktemp -d /tmp/ferryfs-test-all.XXXXXX)
trap 'rm -rf "$logdir"' EXIT

# run_step NAME COMMAND...: runs a step with its output shown and kept in a
# log, records its result and time, and carries on so the summary covers
# every step.
run_step() {
	local name=$1
	shift
	log "$name: $*"
	local start=$SECONDS rc=0 steplog
	steplog="$logdir/step${#step_names[@]}.log"
	"$@" 2>&1 | tee "$steplog" || rc=$?
	step_names+=("$name")
	step_times+=("$((SECONDS - start))s")
	step_logs+=("$steplog")
	if [[ $rc -eq 0 ]]; then
		step_results+=("PASS")
	else
		step_results+=("FAIL (exit $rc)")
	fi
}

run_step "go vet" go vet ./...
run_step "lint" "$repo_root/scripts/lint.sh"
run_step "go test" go test -race -count=1 -timeout 40m ./...

# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------

log "summary ($repo_root)"
failed=0
for i in "${!step_names[@]}"; do
	printf '    %-10s %-16s %s\n' "${step_names[$i]}" "${step_results[$i]}" "${step_times[$i]}"
	if [[ ${step_results[$i]} != PASS ]]; then
		failed=1
		# The failing packages and top-level tests, and any panic.
		grep -E '^(FAIL|--- FAIL|panic:)|^[^ ]+\.go:[0-9]+' "${step_logs[$i]}" | head -40 | sed 's/^/        /' || true
	fi
done
if [[ $failed -ne 0 ]]; then
	printf '\nFAILED: see the output above.\n'
	exit 1
fi
printf '\nALL PASSED\n'
