package passthrough

import (
	"fmt"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/migrate"
)

// hostileDepth is how deep the chains of the hostile-state tests go.
const hostileDepth = 100_000

// deepState is src's state with a chain of directories hostileDepth deep
// below the root, /gone/d/d/..., that the host does not have. The deepest
// has the lowest id, as directories the guest moved below ones it found
// later do: a parent is not always listed before its children.
func deepState(t *testing.T, src *FS) *migrate.State {
	t.Helper()
	st := exportFor(t, src, ExportOptions{Mode: migrate.FindPaths})
	first := st.NextNode
	for k := range uint64(hostileDepth) {
		i := migrate.Inode{ID: first + k, Lookups: 1, Type: unix.S_IFDIR, Parent: first + k + 1, Name: "d"}
		if k == hostileDepth-1 {
			i.Parent, i.Name = migrate.RootID, "gone"
		}
		st.Inodes = append(st.Inodes, i)
	}
	st.NextNode = first + hostileDepth
	return st
}

// TestImportDeepChain: a destination imports a state whose parent chains
// are very deep without its stack growing with the depth (a recursion of
// one frame per ancestor overflowed it, killing the daemon), and loses
// what the host does not have as usual.
func TestImportDeepChain(t *testing.T) {
	src, dir := newFS(t, Options{})
	writeHostFile(t, filepath.Join(dir, "f"), "x")
	mustLookup(t, src, fuseproto.RootID, "f")
	st := deepState(t, src)
	b, err := migrate.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = migrate.Unmarshal(b); err != nil {
		t.Fatalf("a deep valid state refused: %v", err)
	}

	// Far more than an import needs, far less than one frame per
	// ancestor of the deepest inode takes.
	defer debug.SetMaxStack(debug.SetMaxStack(2 << 20))
	dst := newDest(t, src, dir)
	rep, err := dst.ImportState(st, ImportOptions{OnError: migrate.GuestError})
	if err != nil {
		t.Fatalf("ImportState: %v", err)
	}
	if rep.LostInodes != hostileDepth {
		t.Errorf("%d inodes lost, want the %d of the chain", rep.LostInodes, hostileDepth)
	}
	deepest := fuseproto.NodeID(st.NextNode - hostileDepth)
	if errno := getattr(dst, deepest); errno != unix.ESTALE {
		t.Errorf("getattr of the deepest lost inode: %v, want ESTALE", errno)
	}
	if errno := getattr(dst, mustLookup(t, dst, fuseproto.RootID, "f")); errno != 0 {
		t.Errorf("getattr of a file the host has: %v", errno)
	}
}

// TestImportRefusesLoopThroughInvalid: a chain of parents that loops
// through an inode the source marked invalid is refused, naming the
// inode, however long the loop; an import that is given it anyway does
// not follow the loop for ever nor one stack frame per step.
func TestImportRefusesLoopThroughInvalid(t *testing.T) {
	src, dir := newFS(t, Options{})
	st := deepState(t, src)
	// The top directory of the chain, invalid, below the deepest.
	top := &st.Inodes[len(st.Inodes)-1]
	deepest := st.NextNode - hostileDepth
	top.Invalid, top.Parent = "removed on the host", deepest
	b, err := migrate.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	_, err = migrate.Unmarshal(b)
	want := fmt.Sprintf("inode %d: invalid, yet its parent is %d", top.ID, deepest)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Unmarshal: %v, want an error containing %q", err, want)
	}

	// Given to the import all the same, it loses the loop's inodes
	// rather than overflowing the stack following it.
	defer debug.SetMaxStack(debug.SetMaxStack(2 << 20))
	dst := newDest(t, src, dir)
	rep, err := dst.ImportState(st, ImportOptions{OnError: migrate.GuestError})
	if err != nil {
		t.Fatalf("ImportState: %v", err)
	}
	if rep.LostInodes != hostileDepth {
		t.Errorf("%d inodes lost, want the %d of the loop", rep.LostInodes, hostileDepth)
	}
}
