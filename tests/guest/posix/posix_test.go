//go:build ferryfs_guest

package posix

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// mnt is the mounted directory to test; FERRYFS_POSIX_MNT is the fallback.
var mnt = flag.String("mnt", os.Getenv("FERRYFS_POSIX_MNT"), "directory on the file system under test (default $FERRYFS_POSIX_MNT)")

// TestPosix runs every posixtest case, in name order, each in a fresh
// subdirectory of -mnt. Every case runs, including those known to fail on
// some daemons: deciding which failures are expected is the host's job
// (tests/vm), which knows the daemon.
func TestPosix(t *testing.T) {
	if *mnt == "" {
		t.Fatal("no directory to test: pass -mnt DIR or set FERRYFS_POSIX_MNT")
	}
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(*mnt, name)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatalf("removing leftovers of an earlier run: %v", err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatalf("creating the case's directory: %v", err)
			}
			posixtest.All[name](t, dir)
		})
	}
}
