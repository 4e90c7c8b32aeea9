package inodestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
)

var allModes = []FileHandleMode{FileHandlesNever, FileHandlesPrefer, FileHandlesMandatory}

// newStore returns a store on a fresh temporary directory.
func newStore(t testing.TB, mode FileHandleMode, budget *FDBudget) (*Store, string) {
	t.Helper()
	return newStoreOpts(t, Options{FileHandles: mode, Budget: budget})
}

func newStoreOpts(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	rootFD, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	procFD, err := unix.Open("/proc/self/fd", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	opts.ProcSelfFD = procFD
	s, err := New(rootFD, opts)
	if err != nil {
		t.Fatalf("New(%v): %v", opts.FileHandles, err)
	}
	t.Cleanup(func() {
		s.Close()
		unix.Close(procFD)
	})
	return s, dir
}

// lookup does what the passthrough's LOOKUP does: open the name O_PATH
// beneath the parent, statx it, insert it.
func lookup(t testing.TB, s *Store, parent *Inode, name string) (*Inode, error) {
	t.Helper()
	pfd, err := s.PathFD(parent)
	if err != nil {
		return nil, err
	}
	defer pfd.Close()
	fd, err := unix.Openat(pfd.FD, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var stx unix.Statx_t
	if err := statxFD(fd, &stx); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s.Insert(fd, &stx)
}

func mustLookup(t testing.TB, s *Store, parent *Inode, name string) *Inode {
	t.Helper()
	i, err := lookup(t, s, parent, name)
	if err != nil {
		t.Fatalf("lookup %s: %v", name, err)
	}
	s.Put(i)
	return i
}

func writeFile(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestParseFileHandleMode(t *testing.T) {
	for _, m := range allModes {
		got, err := ParseFileHandleMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseFileHandleMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	for _, bad := range []string{"", "Prefer", "always", "never "} {
		if _, err := ParseFileHandleMode(bad); err == nil {
			t.Errorf("ParseFileHandleMode(%q) succeeded", bad)
		}
	}
}

func TestSameObjectSameNode(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			s, dir := newStore(t, mode, nil)
			if s.FileHandles() != mode {
				t.Fatalf("mode fell back to %v on %s", s.FileHandles(), dir)
			}
			writeFile(t, filepath.Join(dir, "a"))
			if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
				t.Fatal(err)
			}
			a1 := mustLookup(t, s, s.Root(), "a")
			a2 := mustLookup(t, s, s.Root(), "a")
			b := mustLookup(t, s, s.Root(), "b")
			if a1.ID != a2.ID || a1.ID != b.ID {
				t.Fatalf("ids a=%d a=%d b=%d, want one node for one host inode", a1.ID, a2.ID, b.ID)
			}
			if a1.ID == fuseproto.RootID {
				t.Fatal("new inode got the root id")
			}
			if n, _ := s.Lookups(a1.ID); n != 3 {
				t.Fatalf("lookups = %d, want 3", n)
			}
			if got := s.Len(); got != 2 {
				t.Fatalf("Len = %d, want 2", got)
			}
			if (mode == FileHandlesNever) != (a1.Handle == nil) {
				t.Fatalf("mode %v: handle = %v", mode, a1.Handle)
			}
		})
	}
}

func TestDotDotAtRootIsRoot(t *testing.T) {
	s, _ := newStore(t, FileHandlesNever, nil)
	i := mustLookup(t, s, s.Root(), ".")
	if i.ID != fuseproto.RootID {
		t.Fatalf("lookup . at root = %d", i.ID)
	}
}

func TestForget(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			budget := NewFDBudget(0)
			s, dir := newStore(t, mode, budget)
			writeFile(t, filepath.Join(dir, "f"))
			i := mustLookup(t, s, s.Root(), "f")
			mustLookup(t, s, s.Root(), "f")
			s.Forget(i.ID, 1)
			if n, ok := s.Lookups(i.ID); !ok || n != 1 {
				t.Fatalf("after forget 1 of 2: %d, %v", n, ok)
			}
			s.Forget(i.ID, 1)
			if _, ok := s.Lookups(i.ID); ok {
				t.Fatal("inode still known at lookup count 0")
			}
			if _, err := s.Get(i.ID); !errors.Is(err, unix.EBADF) {
				t.Fatalf("Get forgotten = %v, want EBADF", err)
			}
			if budget.Used() != 0 {
				t.Fatalf("budget used %d after forget, want 0", budget.Used())
			}
			// A new lookup gets a new node id: ids are never reused.
			j := mustLookup(t, s, s.Root(), "f")
			if j.ID == i.ID {
				t.Fatalf("node id %d reused", j.ID)
			}
			// Over-forgetting and unknown ids are harmless.
			s.Forget(j.ID, 1000)
			s.Forget(12345, 1)
			s.Forget(fuseproto.RootID, 1<<62)
			if _, err := s.Get(fuseproto.RootID); err != nil {
				t.Fatalf("root gone after forget: %v", err)
			}
		})
	}
}

// A request holding an inode keeps its descriptor open across a FORGET that
// drops the last lookup.
func TestForgetWhileInUse(t *testing.T) {
	s, dir := newStore(t, FileHandlesNever, nil)
	writeFile(t, filepath.Join(dir, "f"))
	i := mustLookup(t, s, s.Root(), "f")
	held, err := s.Get(i.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.Forget(i.ID, 1)
	pfd, err := s.PathFD(held)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(pfd.FD, &st); err != nil {
		t.Fatalf("descriptor closed under a request: %v", err)
	}
	pfd.Close()
	s.Put(held)
	if held.fd != -1 {
		t.Fatal("descriptor not closed after the last Put")
	}
}

// An inode number freed by unlink and reused by a new file must not resolve
// to the old node. With descriptors the old object is pinned, so its number
// cannot come back; with handles it can, and the handle tells them apart.
func TestReusedInodeNumberDoesNotAlias(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			s, dir := newStore(t, mode, nil)
			old := filepath.Join(dir, "old")
			writeFile(t, old)
			oldIno := mustLookup(t, s, s.Root(), "old")
			if err := os.Remove(old); err != nil {
				t.Fatal(err)
			}
			// ext4 hands a freed inode number to the next file created in
			// the same group; make a few to give reuse a chance.
			reused := false
			for n := 0; n < 64; n++ {
				name := fmt.Sprintf("new%d", n)
				writeFile(t, filepath.Join(dir, name))
				i := mustLookup(t, s, s.Root(), name)
				if i.ID == oldIno.ID {
					t.Fatalf("new file %s aliases the unlinked file's node %d", name, i.ID)
				}
				if i.Key == oldIno.Key {
					reused = true
				}
			}
			t.Logf("inode number reused: %v", reused)
			if mode == FileHandlesNever && reused {
				t.Fatal("inode number of a pinned object was reused")
			}
		})
	}
}

func TestRacingLookupsGetOneNode(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			s, dir := newStore(t, mode, nil)
			const files, workers, rounds = 8, 8, 50
			for f := 0; f < files; f++ {
				writeFile(t, filepath.Join(dir, fmt.Sprint(f)))
			}
			var mu sync.Mutex
			ids := make(map[string]map[fuseproto.NodeID]bool)
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := 0; r < rounds; r++ {
						name := fmt.Sprint(r % files)
						i, err := lookup(t, s, s.Root(), name)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						if ids[name] == nil {
							ids[name] = make(map[fuseproto.NodeID]bool)
						}
						ids[name][i.ID] = true
						mu.Unlock()
						s.Put(i)
					}
				}()
			}
			wg.Wait()
			var total uint64
			for name, set := range ids {
				if len(set) != 1 {
					t.Errorf("%s got %d node ids with no forget in between", name, len(set))
				}
				for id := range set {
					n, _ := s.Lookups(id)
					total += n
				}
			}
			if total != workers*rounds {
				t.Fatalf("lookup counts add up to %d, want %d", total, workers*rounds)
			}
		})
	}
}

// Lookups and forgets racing each other: counts never go wrong and nothing
// is closed while in use (the race detector and the Fstat check watch).
func TestConcurrentLookupForget(t *testing.T) {
	s, dir := newStore(t, FileHandlesNever, NewFDBudget(0))
	writeFile(t, filepath.Join(dir, "f"))
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < 200; r++ {
				i, err := lookup(t, s, s.Root(), "f")
				if err != nil {
					t.Error(err)
					return
				}
				pfd, err := s.PathFD(i)
				if err != nil {
					t.Error(err)
					return
				}
				var st unix.Stat_t
				if err := unix.Fstat(pfd.FD, &st); err != nil {
					t.Errorf("fstat of a held inode: %v", err)
				}
				pfd.Close()
				id := i.ID
				s.Put(i)
				s.Forget(id, 1)
			}
		}()
	}
	wg.Wait()
	if s.Len() != 1 || s.Budget().Used() != 0 {
		t.Fatalf("after balanced lookups and forgets: %d inodes, %d fds", s.Len(), s.Budget().Used())
	}
}

func TestBudget(t *testing.T) {
	s, dir := newStore(t, FileHandlesNever, NewFDBudget(2))
	for _, n := range []string{"a", "b", "c"} {
		writeFile(t, filepath.Join(dir, n))
	}
	a := mustLookup(t, s, s.Root(), "a")
	mustLookup(t, s, s.Root(), "b")
	if _, err := lookup(t, s, s.Root(), "c"); !errors.Is(err, unix.EMFILE) {
		t.Fatalf("lookup past the budget = %v, want EMFILE", err)
	}
	// A known inode costs nothing more.
	mustLookup(t, s, s.Root(), "a")
	if err := s.ReserveFD(); !errors.Is(err, unix.EMFILE) {
		t.Fatalf("ReserveFD past the budget = %v", err)
	}
	s.Forget(a.ID, 2)
	mustLookup(t, s, s.Root(), "c")
}

func TestHandles(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			budget := NewFDBudget(10)
			s, dir := newStore(t, mode, budget)
			writeFile(t, filepath.Join(dir, "f"))
			i := mustLookup(t, s, s.Root(), "f")
			if err := s.ReserveFD(); err != nil {
				t.Fatal(err)
			}
			fd, err := s.Open(i, unix.O_RDONLY)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			id, err := s.AddHandle(i, fd, unix.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetHandle(id, s.Root().ID); !errors.Is(err, unix.EBADF) {
				t.Fatalf("handle fetched for the wrong node: %v", err)
			}
			if _, err := s.GetHandle(id+1, i.ID); !errors.Is(err, unix.EBADF) {
				t.Fatalf("unknown handle: %v", err)
			}
			h, err := s.GetHandle(id, i.ID)
			if err != nil {
				t.Fatal(err)
			}
			// The inode may be forgotten and the handle released while a
			// request still reads through it.
			s.Forget(i.ID, 1)
			if _, err := s.RemoveHandle(id, i.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RemoveHandle(id, i.ID); !errors.Is(err, unix.EBADF) {
				t.Fatalf("double release = %v", err)
			}
			buf := make([]byte, 1)
			if n, err := unix.Pread(h.FD, buf, 0); n != 1 || err != nil {
				t.Fatalf("read through a released handle in use: %d, %v", n, err)
			}
			s.PutHandle(h)
			if budget.Used() != 0 || s.HandleCount() != 0 {
				t.Fatalf("after release: %d fds, %d handles", budget.Used(), s.HandleCount())
			}
		})
	}
}

func TestOpenRefusesSpecialFiles(t *testing.T) {
	s, dir := newStore(t, FileHandlesNever, nil)
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	i := mustLookup(t, s, s.Root(), "fifo")
	// Opening a FIFO for reading would block the daemon forever.
	if _, err := s.Open(i, unix.O_RDONLY); !errors.Is(err, unix.EBADF) {
		t.Fatalf("Open(fifo) = %v, want EBADF", err)
	}
}

func TestReset(t *testing.T) {
	budget := NewFDBudget(0)
	s, dir := newStore(t, FileHandlesNever, budget)
	writeFile(t, filepath.Join(dir, "f"))
	i := mustLookup(t, s, s.Root(), "f")
	if err := s.ReserveFD(); err != nil {
		t.Fatal(err)
	}
	fd, err := s.Open(i, unix.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddHandle(i, fd, unix.O_RDONLY, 0); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	if s.Len() != 1 || s.HandleCount() != 0 || budget.Used() != 0 {
		t.Fatalf("after Reset: %d inodes, %d handles, %d fds", s.Len(), s.HandleCount(), budget.Used())
	}
}

func BenchmarkLookupKnown(b *testing.B) {
	for _, mode := range []FileHandleMode{FileHandlesNever, FileHandlesMandatory} {
		b.Run(mode.String(), func(b *testing.B) {
			s, dir := newStore(b, mode, nil)
			writeFile(b, filepath.Join(dir, "f"))
			mustLookup(b, s, s.Root(), "f")
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				i, err := lookup(b, s, s.Root(), "f")
				if err != nil {
					b.Fatal(err)
				}
				s.Put(i)
				s.Forget(i.ID, 1)
			}
		})
	}
}

func BenchmarkLookupNew(b *testing.B) {
	for _, mode := range []FileHandleMode{FileHandlesNever, FileHandlesMandatory} {
		b.Run(mode.String(), func(b *testing.B) {
			s, dir := newStore(b, mode, nil)
			const files = 1000
			for f := 0; f < files; f++ {
				writeFile(b, filepath.Join(dir, fmt.Sprint(f)))
			}
			names := make([]string, files)
			for f := range names {
				names[f] = fmt.Sprint(f)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				i, err := lookup(b, s, s.Root(), names[n%files])
				if err != nil {
					b.Fatal(err)
				}
				s.Put(i)
				s.Forget(i.ID, 1) // so the next round's lookup is new again
			}
		})
	}
}

// TestRestoreLost: a lost inode and a lost handle keep their ids and
// answer with their errno, are forgotten and released without touching a
// descriptor or the budget, and do not stand in the way of a new lookup of
// the object; a handle that is not lost cannot be open on a lost inode.
func TestRestoreLost(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			budget := NewFDBudget(10)
			s, dir := newStore(t, mode, budget)
			writeFile(t, filepath.Join(dir, "f"))
			openF := func() int {
				fd, err := unix.Open(filepath.Join(dir, "f"), unix.O_PATH|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				return fd
			}

			// Refused: a working handle on a lost inode. Nothing changes.
			if err := s.ReserveFD(); err != nil {
				t.Fatal(err)
			}
			err := s.Restore([]RestoredInode{{ID: 3, Lookups: 1, FD: -1, Lost: unix.ESTALE, Mode: unix.S_IFREG}},
				[]RestoredHandle{{ID: 1, Node: 3, FD: openF()}}, 10, 5)
			if err == nil {
				t.Fatal("a working handle on a lost inode was accepted")
			}
			if s.Len() != 1 || s.HandleCount() != 0 || budget.Used() != 0 {
				t.Fatalf("a refused restore left %d inodes, %d handles, %d fds", s.Len(), s.HandleCount(), budget.Used())
			}

			if err := s.ReserveFD(); err != nil {
				t.Fatal(err)
			}
			hfd, err := unix.Open(filepath.Join(dir, "f"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Restore([]RestoredInode{
				{ID: 2, Lookups: 1, FD: openF()},
				{ID: 3, Lookups: 2, FD: -1, Lost: unix.ESTALE, Mode: unix.S_IFDIR},
			}, []RestoredHandle{
				{ID: 1, Node: 2, FD: hfd},
				{ID: 2, Node: 3, FD: -1, Lost: unix.ESTALE},
				{ID: 3, Node: 2, FD: -1, Lost: unix.EACCES},
			}, 10, 5)
			if err != nil {
				t.Fatal(err)
			}
			lost, err := s.Get(3)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.PathFD(lost); !errors.Is(err, unix.ESTALE) {
				t.Errorf("PathFD of a lost inode: %v", err)
			}
			if _, err := s.Open(lost, unix.O_RDONLY); !errors.Is(err, unix.ESTALE) {
				t.Errorf("Open of a lost inode: %v", err)
			}
			if !lost.IsDir() || lost.Lost() != unix.ESTALE {
				t.Errorf("lost inode: dir %v, lost %v", lost.IsDir(), lost.Lost())
			}
			s.Put(lost)
			if _, err := s.GetHandle(2, 3); !errors.Is(err, unix.ESTALE) {
				t.Errorf("GetHandle of a lost handle: %v", err)
			}
			if _, err := s.GetHandle(3, 2); !errors.Is(err, unix.EACCES) {
				t.Errorf("GetHandle of a handle lost to EACCES: %v", err)
			}
			h, err := s.GetHandle(1, 2)
			if err != nil {
				t.Fatal(err)
			}
			s.PutHandle(h)
			for _, id := range []uint64{2, 3} {
				if _, err := s.RemoveHandle(id, map[uint64]fuseproto.NodeID{2: 3, 3: 2}[id]); err != nil {
					t.Errorf("release of lost handle %d: %v", id, err)
				}
			}
			// The object the lost inode stood for is found as itself.
			if i := mustLookup(t, s, s.Root(), "f"); i.ID != 2 {
				t.Errorf("lookup of f gave node %d, want 2", i.ID)
			}
			s.Forget(3, 2)
			if _, ok := s.Lookups(3); ok {
				t.Error("a forgotten lost inode is still known")
			}
			s.Reset()
			if s.Len() != 1 || s.HandleCount() != 0 || budget.Used() != 0 {
				t.Fatalf("after Reset: %d inodes, %d handles, %d fds", s.Len(), s.HandleCount(), budget.Used())
			}
		})
	}
}

// TestRestoreRefusesCounters: Restore refuses counters that would make
// the store wrap round to ids in use (past MaxID+1), or hand out 0.
func TestRestoreRefusesCounters(t *testing.T) {
	tests := []struct {
		name                 string
		nextNode, nextHandle fuseproto.NodeID
	}{
		{"node counter past the end", MaxID + 2, 5},
		{"node counter at the very end", 1<<64 - 1, 5},
		{"node counter at the root", fuseproto.RootID, 5},
		{"handle counter past the end", 10, MaxID + 2},
		{"handle counter zero", 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t, FileHandlesNever, nil)
			err := s.Restore([]RestoredInode{{ID: 3, Lookups: 1, FD: -1, Lost: unix.ESTALE, Mode: unix.S_IFREG}}, nil, tt.nextNode, uint64(tt.nextHandle))
			if err == nil || !strings.Contains(err.Error(), "next ids") {
				t.Fatalf("Restore: %v, want the counters refused", err)
			}
			if s.Len() != 1 {
				t.Fatalf("a refused restore left %d inodes", s.Len())
			}
		})
	}
}
