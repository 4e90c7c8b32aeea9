package main

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/ferryfs/ferryfs/migrate"
)

// FuzzInspectState: state inspect takes any bytes without panicking, and
// what it writes and allocates is linear in them: a bounded path per
// inode, never every full path.
func FuzzInspectState(f *testing.F) {
	seed := func(s *migrate.State) {
		b, err := migrate.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, err := os.ReadFile(writeState(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	deep := deepChainState(300)
	seed(deep)
	// Its parents listed after their children, and looping through an
	// invalid inode.
	for k := range deep.Inodes[1:] {
		i := &deep.Inodes[k+1]
		i.Parent = i.ID + 1
	}
	deep.Inodes[len(deep.Inodes)-1].Invalid = "removed"
	seed(deep)
	seed(&migrate.State{Mode: migrate.FindPaths, NextNode: 1<<64 - 1, NextHandle: 1<<64 - 1,
		Inodes: []migrate.Inode{{ID: 1, Type: 0o040000}}})
	f.Add([]byte("FERRYFS\x00\x00\x01\x81\xa6inodes\x93\xc0\xc0\xc0"))
	f.Add([]byte("not a state"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, asJSON := range []bool{false, true} {
			out := &cutWriter{}
			var err error
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err = inspectState(out, b, asJSON, true)
			runtime.ReadMemStats(&after)
			if err != nil && !errors.Is(err, errStateProblems) && out.n > 0 {
				t.Fatalf("error %v after %d bytes of output", err, out.n)
			}
			// A line of bounded size per inode, and the strings the
			// state itself carries, quoted; the constants are the
			// header, at most 20 problems, and fixed costs.
			if limit := 64*len(b) + 256<<10; out.n > limit {
				t.Fatalf("json %v: %d bytes written for %d bytes of state, more than %d", asJSON, out.n, len(b), limit)
			}
			if n, limit := after.TotalAlloc-before.TotalAlloc, 256*uint64(len(b))+4<<20; n > limit {
				t.Fatalf("json %v: %d bytes allocated for %d bytes of state, more than %d", asJSON, n, len(b), limit)
			}
		}
	})
}
