#!/usr/bin/env bash
# bench-vs-virtiofsd.sh: boot the same guest workloads against ferryfs and
# against virtiofsd 1.13, alternating runs, and print medians and
# ferryfs/virtiofsd ratios of the guest's wall time and the daemon's CPU
# time. Run as root; it prepares the QEMU assets like the tests do.
#
#   sudo scripts/bench-vs-virtiofsd.sh                 # 3 rounds, --cache=auto
#   sudo ROUNDS=5 FLAGS="--cache=never" scripts/bench-vs-virtiofsd.sh
#   sudo ONLY=sequential,random scripts/bench-vs-virtiofsd.sh   # some groups only
#   sudo OTHERS=/tmp/ferryfs-before scripts/bench-vs-virtiofsd.sh   # also measure another build
#
# Guests run under TCG, so absolute times mostly measure the emulated guest
# kernel; the daemon CPU time is the steadier figure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
# go.mod asks for Go 1.27.3; a machine's own Go (1.26) fetches that release
# from the module proxy when told to, and ignores go.mod's line otherwise.
export GOTOOLCHAIN=go1.27.3
scripts/e2e-assets.sh >/dev/null
export FERRYFS_BENCH_ROUNDS="${ROUNDS:-3}"
export FERRYFS_BENCH_FLAGS="${FLAGS:---cache=auto}"
export FERRYFS_BENCH_GROUPS="${ONLY:-}"
export FERRYFS_BENCH_OTHERS="${OTHERS:-}"
exec go test -run '^$' -bench '^BenchmarkGuestVsVirtiofsd$' -benchtime 1x -timeout 3h ./tests/vm/
