package passthrough

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/inodestore"
)

// TestSearchPaths: the fallback walk finds the remaining hard link of a
// file, a file deep in the tree, not something behind a symlink, and
// reports what does not exist as unfound.
func TestSearchPaths(t *testing.T) {
	fs, dir := newFS(t, Options{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "x/y/z"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "x/y/z/deep"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "first"), nil, 0o644))
	must(os.Link(filepath.Join(dir, "first"), filepath.Join(dir, "x/second")))
	must(os.Remove(filepath.Join(dir, "first")))
	outside := t.TempDir()
	must(os.WriteFile(filepath.Join(outside, "hidden"), nil, 0o644))
	must(os.Symlink(outside, filepath.Join(dir, "link")))

	keyOf := func(p string) inodestore.Key {
		var stx unix.Statx_t
		must(unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, inodestore.StatxMask, &stx))
		return inodestore.KeyOf(&stx)
	}
	second, deep, hidden := keyOf(filepath.Join(dir, "x/second")), keyOf(filepath.Join(dir, "x/y/z/deep")), keyOf(filepath.Join(outside, "hidden"))
	root, err := fs.store.PathFD(fs.store.Root())
	must(err)
	defer root.Close()
	got := fs.searchPaths(root.FD, map[inodestore.Key]bool{second: true, deep: true, hidden: true})
	want := map[inodestore.Key]string{second: "x/second", deep: "x/y/z/deep"}
	if len(got) != len(want) {
		t.Errorf("found %v, want %v", got, want)
	}
	for k, p := range want {
		if got[k] != p {
			t.Errorf("key %v: found %q, want %q", k, got[k], p)
		}
	}
}
