#!/usr/bin/env bash
# bench-migration.sh: live-migrate a guest that knows 10,000 files from one
# daemon to another with QEMU 10, with ferryfs and with virtiofsd 1.13,
# alternating runs, and print the medians of QEMU's reported downtime and
# total migration time, the ferryfs/virtiofsd ratios, and the size of
# ferryfs's migration state. Run as root; it prepares the QEMU assets like
# the tests do.
#
#   sudo scripts/bench-migration.sh                   # 3 rounds, --cache=auto --migration-mode=find-paths
#   sudo ROUNDS=9 scripts/bench-migration.sh
#   sudo FLAGS="--cache=always --migration-mode=find-paths" scripts/bench-migration.sh
#
# FLAGS go to both daemons, so both must accept them. Guests run under TCG
# and one migration takes about a second, so the figures are noisy: use
# more rounds, on an otherwise idle machine, before drawing conclusions.
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
export FERRYFS_BENCH_FLAGS="${FLAGS:---cache=auto --migration-mode=find-paths}"
exec go test -run '^$' -bench '^BenchmarkMigrationVsVirtiofsd$' -benchtime 1x -timeout 3h ./tests/vm/
