package tests

import (
	"sort"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// knownFailures lists posixtest cases that cannot pass on a ferryfs mount,
// each with the reason, found by reading the case. A key is a case name
// (every variant) or "variant/case". They are skipped with the reason rather
// than hidden.
var knownFailures = map[string]string{
	// FcntlFlockLocksFile takes an F_WRLCK with F_SETLK on one fd and then
	// expects F_SETLK(F_RDLCK) on a second fd of the same file, from the
	// same process, to fail with EAGAIN. POSIX record locks belong to the
	// process, so the second request never conflicts with the first: the
	// case fails on every Linux file system (on the host's ext4 too), and
	// go-fuse's own posixtest.TestAll skips it ("TODO - fix this test").
	"FcntlFlockLocksFile": "the case is wrong for POSIX locks: fcntl locks of one process never conflict " +
		"with each other, so F_SETLK succeeds where it expects EAGAIN (fails on ext4 too; go-fuse's own TestAll skips it)",
}

// tmpfsBacked lists posixtest cases that need a shared directory on tmpfs
// rather than on the file system holding TMPDIR, with the reason.
var tmpfsBacked = map[string]string{
	"XAttrLarge": "ext4, the usual TMPDIR, cannot store the case's 8 KiB xattr value (ENOSPC) and the case would skip",
}

// posixVariants are the daemon configurations posixtest runs under.
var posixVariants = []struct {
	name  string
	flags []string
}{
	{"fh-never", []string{"--xattr", "--inode-file-handles=never"}},
	{"fh-prefer", []string{"--xattr", "--inode-file-handles=prefer"}}, // ferryfs's default
	{"fh-mandatory", []string{"--xattr", "--inode-file-handles=mandatory"}},
}

// TestPosix runs every case of go-fuse's posixtest suite against a fresh
// ferryfs mount.
func TestPosix(t *testing.T) {
	requireMountEnv(t)
	caseNames := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		caseNames = append(caseNames, name)
	}
	sort.Strings(caseNames)
	for _, v := range posixVariants {
		t.Run(v.name, func(t *testing.T) {
			for _, name := range caseNames {
				fn := posixtest.All[name]
				t.Run(name, func(t *testing.T) {
					for _, key := range []string{name, v.name + "/" + name} {
						if reason, ok := knownFailures[key]; ok {
							t.Skipf("known failure: %s", reason)
						}
					}
					src := t.TempDir()
					if reason, ok := tmpfsBacked[name]; ok {
						t.Logf("shared directory on tmpfs: %s", reason)
						src = tmpfsDir(t)
					}
					mnt := t.TempDir()
					startDaemon(t, src, mnt, v.flags...)
					fn(t, mnt)
				})
			}
		})
	}
}

// TestKnownFailuresNameRealCases keeps knownFailures and tmpfsBacked from
// naming cases or variants that do not exist.
func TestKnownFailuresNameRealCases(t *testing.T) {
	variants := map[string]bool{}
	for _, v := range posixVariants {
		variants[v.name] = true
	}
	for _, m := range []map[string]string{knownFailures, tmpfsBacked} {
		for key := range m {
			name := key
			if v, n, ok := strings.Cut(key, "/"); ok {
				if !variants[v] {
					t.Errorf("key %q names no variant of posixVariants", key)
				}
				name = n
			}
			if _, ok := posixtest.All[name]; !ok {
				t.Errorf("key %q names no case of posixtest.All", key)
			}
		}
	}
}
