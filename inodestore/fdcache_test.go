package inodestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFDCacheHoldsRecentLookups(t *testing.T) {
	budget := NewFDBudget(0)
	s, dir := newStoreOpts(t, Options{FileHandles: FileHandlesMandatory, Budget: budget, FDCacheSize: 2})
	var ids []*Inode
	for k := 0; k < 3; k++ {
		name := fmt.Sprint(k)
		writeFile(t, filepath.Join(dir, name))
		ids = append(ids, mustLookup(t, s, s.Root(), name))
	}
	if s.CachedFDs() != 2 || budget.Used() != 2 {
		t.Fatalf("cache holds %d, budget %d; want 2 and 2", s.CachedFDs(), budget.Used())
	}
	// The oldest was evicted; its PathFD comes from its handle and is
	// cached again (evicting the next oldest).
	p, err := s.PathFD(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if s.CachedFDs() != 2 || budget.Used() != 2 {
		t.Fatalf("after re-caching: cache %d, budget %d", s.CachedFDs(), budget.Used())
	}
	for _, i := range ids {
		s.Forget(i.ID, 1)
	}
	if s.CachedFDs() != 0 || budget.Used() != 0 {
		t.Fatalf("after forgetting everything: cache %d, budget %d", s.CachedFDs(), budget.Used())
	}
}

// A descriptor in use by a request is never evicted from under it.
func TestFDCacheSkipsBusyInodes(t *testing.T) {
	s, dir := newStoreOpts(t, Options{FileHandles: FileHandlesMandatory, FDCacheSize: 1})
	writeFile(t, filepath.Join(dir, "a"))
	writeFile(t, filepath.Join(dir, "b"))
	a := mustLookup(t, s, s.Root(), "a")
	pa, err := s.PathFD(a)
	if err != nil {
		t.Fatal(err)
	}
	if pa.cached == nil {
		t.Fatal("a's PathFD is not its cached descriptor")
	}
	b := mustLookup(t, s, s.Root(), "b") // cache full of busy a: b not cached
	var st unix.Stat_t
	if err := unix.Fstat(pa.FD, &st); err != nil {
		t.Fatalf("a's descriptor closed while in use: %v", err)
	}
	pb, err := s.PathFD(b)
	if err != nil {
		t.Fatal(err)
	}
	if pb.cached != nil {
		t.Fatal("b was cached although the only slot is busy")
	}
	pb.Close()
	pa.Close()
	// Now a is idle and can make room.
	pb, _ = s.PathFD(b)
	if pb.cached == nil {
		t.Fatal("b not cached once a was idle")
	}
	pb.Close()
}

// A file looked up and then replaced (rename over it) can still be opened
// through the cache, as with descriptors; without the cache the handle
// names a freed inode: ESTALE.
func TestFDCacheKeepsLookedUpObject(t *testing.T) {
	for _, c := range []struct {
		name  string
		cache int
		want  error
	}{
		{"cache", 0, nil},
		{"no cache", -1, unix.ESTALE},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, dir := newStoreOpts(t, Options{FileHandles: FileHandlesMandatory, FDCacheSize: c.cache})
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			i := mustLookup(t, s, s.Root(), "f")
			if err := os.WriteFile(path+".new", []byte("new"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
			fd, err := s.Open(i, unix.O_RDONLY)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open after replace = %v, want %v", err, c.want)
			}
			if err == nil {
				buf := make([]byte, 8)
				n, _ := unix.Read(fd, buf)
				unix.Close(fd)
				if string(buf[:n]) != "old" {
					t.Fatalf("read %q, want the looked-up file's %q", buf[:n], "old")
				}
			}
		})
	}
}
