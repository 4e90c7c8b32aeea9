package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ferryfs/ferryfs/migrate"
)

// writeState writes a find-paths state knowing /a, /a/b, /a/c (open) and
// an inode the source could not describe.
func writeState(t testing.TB) string {
	t.Helper()
	s := &migrate.State{
		Mode:       migrate.FindPaths,
		Session:    migrate.Session{Major: 7, Minor: 38, Flags: 0x1, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: 1},
		Options:    migrate.Options{Cache: "auto", Xattr: true},
		NextNode:   8,
		NextHandle: 3,
		Inodes: []migrate.Inode{
			{ID: 1, Lookups: 1, Type: 0o040000},
			{ID: 2, Lookups: 1, Type: 0o040000, Parent: 1, Name: "a"},
			{ID: 3, Lookups: 1, Type: 0o100000, Parent: 2, Name: "b"},
			{ID: 4, Lookups: 2, Type: 0o100000, Parent: 2, Name: "c"},
			{ID: 5, Lookups: 1, Type: 0o100000, Invalid: "unlinked on the host: it has no path"},
			{ID: 6, Lookups: 1, Type: 0o100000, Parent: 1, Name: ".ferryfs-orphans/x-1", Unlinked: true},
			{ID: 7, Lookups: 1, Type: 0o100000, Invalid: "removed on the host: it has no path", Gone: true},
		},
		Handles: []migrate.Handle{{ID: 1, Node: 4, Flags: 2, GuestFlags: 2}, {ID: 2, Node: 6}},
	}
	b, err := migrate.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStateInspect(t *testing.T) {
	path := writeState(t)
	out, err := run(t, "state", "inspect", "--inodes", path)
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	for _, want := range []string{"version 1", "find-paths", "FUSE 7.38", "inodes    7 (2 invalid, 1 unlinked while open)", "handles   2",
		"/a/c", "INVALID: unlinked on the host", "unlinked, kept as /.ferryfs-orphans/x-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "state", "inspect", "--json", "--inodes", path)
	if err != nil {
		t.Fatal(err)
	}
	var r stateReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if r.InodeCount != 7 || r.Invalid != 2 || r.Unlinked != 1 || r.Inodes[3].Where != "/a/c" || r.Inodes[3].Handles != 1 || !r.Inodes[5].Unlinked {
		t.Errorf("JSON report %+v", r)
	}

	// An inconsistent state is shown with its problems, then the
	// command exits 1 without another message (errStateProblems itself).
	s := deepChainState(3)
	s.Inodes[1].Parent = 4
	b, err := migrate.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	looping := filepath.Join(t.TempDir(), "looping")
	if err := os.WriteFile(looping, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "state", "inspect", looping)
	if err != errStateProblems || !strings.Contains(out, "problems:") || !strings.Contains(out, "cycle") {
		t.Errorf("inspect of a looping state: %v\n%s", err, out)
	}

	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("not a state"), 0o600)
	if _, err := run(t, "state", "inspect", bad); err == nil || !strings.Contains(err.Error(), "not a ferryfs migration state") {
		t.Errorf("inspect of garbage: %v", err)
	}
}

func TestStateVerify(t *testing.T) {
	path := writeState(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "a"), 0o755)
	os.WriteFile(filepath.Join(dir, "a", "b"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, "a", "c"), 0o755) // a directory where the guest knows a file
	os.Mkdir(filepath.Join(dir, ".ferryfs-orphans"), 0o700)
	os.WriteFile(filepath.Join(dir, ".ferryfs-orphans", "x-1"), nil, 0o644)
	out, err := run(t, "state", "verify", "--shared-dir", dir, path)
	if err != errStateProblems {
		t.Fatalf("verify: %v, want the problems exit\n%s", err, out)
	}
	for _, want := range []string{"missing inode 4 (/a/c): found a directory, the guest knows a regular file",
		"missing inode 5 (no location)", "gone inode 7", "4 of 7 inodes found"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	os.Remove(filepath.Join(dir, "a", "c"))
	os.WriteFile(filepath.Join(dir, "a", "c"), nil, 0o644)
	out, _ = run(t, "state", "verify", "--shared-dir", dir, path)
	if !strings.Contains(out, "5 of 7 inodes found") {
		t.Errorf("verify after the fix:\n%s", out)
	}
	// Only a gone inode left missing: the migration would go on.
	s, err := migrate.Unmarshal(mustRead(t, path))
	if err != nil {
		t.Fatal(err)
	}
	s.Inodes[4].Invalid, s.Inodes[4].Parent, s.Inodes[4].Name = "", 1, "e"
	os.WriteFile(filepath.Join(dir, "e"), nil, 0o644)
	b, err := migrate.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, b, 0o600)
	if out, err := run(t, "state", "verify", "--shared-dir", dir, path); err != nil || !strings.Contains(out, "6 of 7 inodes found") {
		t.Errorf("verify with only a gone inode missing: %v\n%s", err, out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStateInspectDeepChain: inspect --inodes of a state 100k directories
// deep costs memory linear in the state: each inode is shown by its path
// cut to its end, and its full path (10 GB for all of them) is not built.
func TestStateInspectDeepChain(t *testing.T) {
	b, err := migrate.Marshal(deepChainState(100_000))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, flags := range [][]string{{"--inodes"}, {"--inodes", "--json"}} {
		// The output goes nowhere: only what inspect holds counts.
		out := &cutWriter{}
		cmd := newRootCmd()
		cmd.SetOut(out)
		cmd.SetErr(out)
		cmd.SetArgs(append(append([]string{"state", "inspect"}, flags...), path))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := cmd.Execute()
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("inspect %v: %v", flags, err)
		}
		n := after.TotalAlloc - before.TotalAlloc
		t.Logf("inspect %v: %d bytes out, %d allocated (%.1f times the state)", flags, out.n, n, float64(n)/float64(len(b)))
		if limit := 64 * uint64(len(b)); n > limit {
			t.Errorf("inspect %v allocated %d bytes for a %d-byte state, want at most %d", flags, n, len(b), limit)
		}
		if !out.cut {
			t.Errorf("inspect %v shows no cut path", flags)
		}
	}
}

// deepChainState is a find-paths state of a chain of directories depth
// deep below the root, /d/d/d/...
func deepChainState(depth uint64) *migrate.State {
	s := &migrate.State{
		Mode:       migrate.FindPaths,
		Session:    migrate.Session{Major: 7, Minor: 38, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: 1},
		Options:    migrate.Options{Cache: "auto"},
		NextNode:   depth + 2,
		NextHandle: 1,
		Inodes:     []migrate.Inode{{ID: 1, Lookups: 1, Type: 0o040000}},
	}
	for id := uint64(2); id < depth+2; id++ {
		s.Inodes = append(s.Inodes, migrate.Inode{ID: id, Lookups: 1, Type: 0o040000, Parent: id - 1, Name: "d"})
	}
	return s
}

// cutWriter counts what is written to it and whether a cut path
// (migrate.State.Paths) was among it.
type cutWriter struct {
	n   int
	cut bool
}

func (w *cutWriter) Write(b []byte) (int, error) {
	w.n += len(b)
	w.cut = w.cut || bytes.Contains(b, []byte("…"))
	return len(b), nil
}
