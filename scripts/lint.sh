#!/usr/bin/env bash
# lint.sh: staticcheck and govulncheck over the whole module, both clean or
# it fails. test-all.sh runs it; run it alone with `scripts/lint.sh`.
#
# govulncheck's database normally comes from vuln.go.dev, which these
# machines cannot reach. The Go module proxy serves the database's source
# repository (golang.org/x/vulndb, its OSV reports), and that repository's
# indexdb command turns the reports into the database govulncheck reads:
# built once per pinned version and cached. Move VULNDB_VERSION forward to
# check against newer reports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
export GOTOOLCHAIN=go1.27.3

STATICCHECK_VERSION=v0.8.2
GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
cache=${FERRYFS_LINT_CACHE:-/var/cache/ferryfs-e2e}/lint
mkdir -p "$cache/bin"

tool() { # tool NAME PACKAGE@VERSION: installs into the cache once
	local name=$1 pkg=$2
	local bin="$cache/bin/$name-${pkg##*@}"
	if [[ ! -x $bin ]]; then
		GOBIN="$cache/bin/tmp" go install "$pkg" >&2
		mv "$cache/bin/tmp/$name" "$bin"
	fi
	echo "$bin"
}

staticcheck=$(tool staticcheck "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION")
govulncheck=$(tool govulncheck "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION")

db="$cache/vulndb-$VULNDB_VERSION"
if [[ ! -f $db/index/db.json ]]; then
	echo "building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION (a few minutes, once)" >&2
	src=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -d $src/data/osv ]] || { echo "lint.sh: golang.org/x/vulndb@$VULNDB_VERSION has no data/osv" >&2; exit 1; }
	rm -rf "$db.tmp"
	indexdb=$(tool indexdb "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION")
	"$indexdb" -vulns "$src/data/osv" -out "$db.tmp"
	mv "$db.tmp" "$db"
fi

rc=0
echo "==> staticcheck $STATICCHECK_VERSION"
"$staticcheck" ./... || rc=1
echo "==> govulncheck $GOVULNCHECK_VERSION (database golang.org/x/vulndb@$VULNDB_VERSION)"
"$govulncheck" -db "file://$db" ./... || rc=1
exit $rc
