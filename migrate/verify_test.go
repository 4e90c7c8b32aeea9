package migrate

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestVerifyDeepChain: verifying a state whose chain of directories is
// 100k deep, none of which the host has, costs memory linear in the
// state: what is below a missing directory is missing without its path
// being built (each built up to PATH_MAX took 26 s and gigabytes).
func TestVerifyDeepChain(t *testing.T) {
	s := chain(deepChain)
	b, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	root, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	var missing []Missing
	if n, limit := allocated(func() { missing = Verify(s, root) }), 32*uint64(len(b)); n > limit {
		t.Errorf("Verify allocated %d bytes for a %d-byte state, want at most %d", n, len(b), limit)
	}
	if len(missing) != deepChain {
		t.Fatalf("%d inodes missing, want %d", len(missing), deepChain)
	}
	if m := missing[0]; m.ID != 2 || !errors.Is(m.Err, unix.ENOENT) {
		t.Errorf("first missing: %d %v, want 2 ENOENT", m.ID, m.Err)
	}
	for _, m := range missing[1:3] {
		if want := fmt.Sprintf("below missing directory %d", m.ID-1); m.Err == nil || !strings.Contains(m.Err.Error(), want) {
			t.Errorf("inode %d: %v, want %q", m.ID, m.Err, want)
		}
	}
}
