#!/usr/bin/env bash
# bench-state.sh: measure what a live migration spends on the state of a
# guest that knows 10k, 100k and 1M inodes of a real directory tree, in both
# migration modes (find-paths and file-handles): the save on the source
# (ExportState and Marshal), the load on the destination (Unmarshal and
# ImportState into a fresh file system) and the encoded state's size. It
# runs BenchmarkMigrationState (passthrough/bench_state_test.go), prints go
# test's output and then a table of time and bytes per inode. Run as root:
# open_by_handle_at needs CAP_DAC_READ_SEARCH.
#
#   sudo scripts/bench-state.sh                       # 10k, 100k and 1M
#   sudo MAX=100k scripts/bench-state.sh              # skip 1M (minutes)
#   sudo COUNT=5 scripts/bench-state.sh               # for benchstat
#   sudo scripts/bench-state.sh -cpuprofile /tmp/state.cpu   # more go test flags
#
# The trees (a million empty files for 1M) are built under BENCH_DIR
# (default /var/tmp), which must be on a file system with file handles (ext4,
# xfs, btrfs, tmpfs), and removed at the end. A load holds a descriptor per
# directory while it resolves names (about 10,000 for 1M); where
# RLIMIT_NOFILE cannot be raised that far the load is skipped, and
# unmarshal, its first step, still runs. All runs are warm (the tree is in
# the host's caches).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
# go.mod asks for Go 1.27.3; a machine's own Go (1.26) fetches that release
# from the module proxy when told to, and ignores go.mod's line otherwise.
export GOTOOLCHAIN=go1.27.3

die() { printf 'bench-state.sh: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run me as root: file handles need CAP_DAC_READ_SEARCH"

max="${MAX:-1M}"
case "$max" in
10k) files=10000 ;;
100k) files=100000 ;;
1M) files=1000000 ;;
*) die "MAX=$max: want 10k, 100k or 1M" ;;
esac

# Room for the largest tree: an inode per file and directory, and about
# 64 bytes of disk per file for directory blocks and inode tables, with a
# generous margin on both.
base="${BENCH_DIR:-/var/tmp}"
read -r iavail mavail < <(df --output=iavail,avail -BM "$base" | awk 'NR == 2 { sub(/M$/, "", $2); print $1, $2 }')
(( iavail >= files * 2 )) || die "$base has $iavail free inodes; the $max tree needs about $((files * 101 / 100)) (BENCH_DIR= elsewhere)"
(( mavail >= files / 1000 + 1024 )) || die "$base has ${mavail} MiB free; want $((files / 1000 + 1024)) MiB (BENCH_DIR= elsewhere)"

work=$(mktemp -d "$base/ferryfs-bench-state.XXXXXX")
trap 'rm -rf "$work"' EXIT
out="$work/bench.txt"

printf 'trees under %s (%s), up to %s files; RLIMIT_NOFILE %s, hard %s, nr_open %s\n\n' \
	"$work" "$(findmnt -no FSTYPE -T "$work")" "$max" "$(ulimit -Sn)" "$(ulimit -Hn)" "$(cat /proc/sys/fs/nr_open)"

# -v shows the skipped loads and the tree-building log lines; the === lines
# are noise.
TMPDIR="$work" FERRYFS_BENCH_STATE_MAX="$max" \
	go test -run '^$' -bench '^BenchmarkMigrationState$' -v \
	-count "${COUNT:-1}" -benchtime "${BENCHTIME:-1s}" -timeout 3h "$@" ./passthrough |
	grep -v -e '^=== ' -e '^BenchmarkMigrationState[^ ]*$' | tee "$out"

# One row per size and mode: ns/inode and state bytes per inode, averaged
# over COUNT runs; alloc-B/inode is the save's or load's B/op per inode.
printf '\n'
awk '
/^BenchmarkMigrationState\/.* ns\/op/ {
	split($1, p, "/"); sub(/-[0-9]+$/, "", p[4])
	key = p[2] " " p[3]; op = p[4]
	if (!(key in seen)) { seen[key] = 1; order[++n] = key }
	for (i = 3; i < NF; i += 2) { sum[key, op, $(i+1)] += $i; cnt[key, op, $(i+1)]++ }
}
function get(key, op, unit) { return cnt[key, op, unit] ? sum[key, op, unit] / cnt[key, op, unit] : -1 }
function show(v, f) { return v < 0 ? "-" : sprintf(f, v) }
END {
	fmt = "%-5s %-13s %8s %11s %11s %9s %11s %11s %11s %8s\n"
	printf fmt, "size", "mode", "inodes", "save ms", "save ns/in", "load ms", "load ns/in", "unmar ns/in", "state B/in", "state MB"
	for (k = 1; k <= n; k++) {
		key = order[k]; split(key, f, " ")
		inodes = get(key, "save", "inodes")
		printf fmt, f[1], f[2], show(inodes, "%d"),
			show(get(key, "save", "ns/op") < 0 ? -1 : get(key, "save", "ns/op") / 1e6, "%.1f"),
			show(get(key, "save", "ns/inode"), "%.0f"),
			show(get(key, "load", "ns/op") < 0 ? -1 : get(key, "load", "ns/op") / 1e6, "%.1f"),
			show(get(key, "load", "ns/inode"), "%.0f"),
			show(get(key, "unmarshal", "ns/inode"), "%.0f"),
			show(get(key, "save", "state-B/inode"), "%.1f"),
			show(get(key, "save", "state-B") < 0 ? -1 : get(key, "save", "state-B") / 1e6, "%.1f")
	}
}' "$out"
# Why a load is missing, once per reason.
grep -h -e 'ImportState holds' "$out" | sed 's/^ *[a-z_]*\.go:[0-9]*: /load skipped: /' | sort -u || true
