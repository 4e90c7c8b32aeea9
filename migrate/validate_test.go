package migrate

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// chain is a find-paths state of one directory chain n deep below the
// root: /d/d/d/..., every inode named "d".
func chain(n int) *State {
	s := sample()
	s.Handles = nil
	s.Inodes = []Inode{{ID: RootID, Lookups: 1, Type: dirType}}
	for id := uint64(2); id < uint64(n)+2; id++ {
		s.Inodes = append(s.Inodes, Inode{ID: id, Lookups: 1, Type: dirType, Parent: id - 1, Name: "d"})
	}
	s.NextNode = uint64(n) + 2
	return s
}

// TestValidateDeepChainLinear: checking that every parent chain leads to
// the root costs a bounded number of steps per inode, however deep the
// tree: following every chain to the root would make a 100k-deep chain
// cost 5e9 steps (minutes), a state a hostile source can send in a few MB.
func TestValidateDeepChainLinear(t *testing.T) {
	for _, n := range []int{10, 1000, 100_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := chain(n)
			byID := make(map[uint64]int, len(s.Inodes))
			for k := range s.Inodes {
				byID[s.Inodes[k].ID] = k
			}
			var problems []string
			steps := checkParents(s.Inodes, byID, func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) })
			if len(problems) > 0 {
				t.Fatalf("a valid chain refused: %v", problems)
			}
			if max := 3 * len(s.Inodes); steps > max {
				t.Fatalf("%d steps to check %d inodes, want at most %d", steps, len(s.Inodes), max)
			}
			if err := s.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// TestValidateInvalidInodes: an invalid inode (one the source could not
// describe) has no parent, or the root for an unlinked file, and what the
// guest knows below it is valid: the destination loses it with its parent.
func TestValidateInvalidInodes(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *State)
	}{
		{"no parent", func(s *State) {
			s.Inodes[1].Parent, s.Inodes[1].Name, s.Inodes[1].Invalid = 0, "", "removed on the host"
		}},
		{"unlinked, in the root's orphan directory", func(s *State) {
			s.Inodes[4].Unlinked, s.Inodes[4].Name, s.Inodes[4].Invalid = true, ".ferryfs-orphans/x", "cannot open"
		}},
		{"lost in an earlier migration", func(s *State) {
			s.Inodes[2].Parent, s.Inodes[2].Name, s.Inodes[2].Invalid, s.Inodes[2].Lost = 0, "", "lost", 116
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sample()
			s.Handles = nil
			tt.mutate(s)
			if err := s.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// deepChain is the depth of the chains the linearity tests use: deep
// enough that work quadratic in the depth takes minutes and gigabytes.
const deepChain = 100_000

// allocated returns the bytes f allocates (in this process: tests that
// use it do not run in parallel).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestPathsDeepChain: Paths, which messages describe inodes by, costs
// memory linear in the state however deep the tree: a long path is cut
// to its end. Every full path of a 100k-deep chain would take 10 GB.
func TestPathsDeepChain(t *testing.T) {
	s := chain(deepChain)
	b, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var paths map[uint64]string
	if n := allocated(func() { paths = s.Paths() }); n > 16*uint64(len(b)) {
		t.Fatalf("Paths allocated %d bytes for a %d-byte state", n, len(b))
	}
	full := strings.Repeat("/d", 64)[1:] // 127 bytes, 64 deep
	if paths[2] != "d" || paths[65] != full {
		t.Errorf("short paths %q and %q, want d and %q", paths[2], paths[65], full)
	}
	deepest := paths[uint64(deepChain)+1]
	if !strings.HasPrefix(deepest, cutMark) || len(deepest) != len(cutMark)+maxShownPath || !strings.HasSuffix(deepest, "d/d/d") {
		t.Errorf("deepest path %q, want its last %d bytes after %q", deepest, maxShownPath, cutMark)
	}
}

// TestPathsBrokenChains: Paths of a state that did not pass validation
// (state inspect shows those) gives no path to the inodes whose parents
// loop, are missing or cannot be placed, and still one to the others.
func TestPathsBrokenChains(t *testing.T) {
	s := sample()
	s.Inodes = append(s.Inodes,
		Inode{ID: 6, Lookups: 1, Type: dirType, Parent: 7, Name: "x"},
		Inode{ID: 7, Lookups: 1, Type: dirType, Parent: 6, Name: "y"},
		Inode{ID: 8, Lookups: 1, Type: fileType, Parent: 7, Name: "z"},
		Inode{ID: 9, Lookups: 1, Type: fileType, Parent: 99, Name: "w"},
		Inode{ID: 10, Lookups: 1, Type: dirType, Invalid: "removed"},
		Inode{ID: 11, Lookups: 1, Type: fileType, Parent: 10, Name: "v"},
	)
	paths := s.Paths()
	want := map[uint64]string{1: "", 2: "a", 3: "a/b", 4: "a/c", 5: "d"}
	if len(paths) != len(want) {
		t.Errorf("paths %v, want %v", paths, want)
	}
	for id, p := range want {
		if got, ok := paths[id]; !ok || got != p {
			t.Errorf("path of %d: %q %v, want %q", id, got, ok, p)
		}
	}
}
