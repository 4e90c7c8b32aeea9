package migrate

import (
	"fmt"
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
