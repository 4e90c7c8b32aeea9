package passthrough

import (
	"fmt"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
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

// TestImportIDsDoNotWrap: the id counters a state sets are bounded, and
// a destination that has given out its last id refuses new inodes and
// handles (ENFILE) rather than wrapping round to ids in use: the root's,
// or a restored handle's, which a new one overwrote.
func TestImportIDsDoNotWrap(t *testing.T) {
	const lastID = 1<<63 - 1 // the largest id a destination gives out
	src, dir := newFS(t, Options{})
	writeHostFile(t, filepath.Join(dir, "f"), "x")
	for _, name := range []string{"g", "h", "k"} {
		writeHostFile(t, filepath.Join(dir, name), "")
	}
	f := mustLookup(t, src, fuseproto.RootID, "f")
	fh, errno := open(t, src, f, unix.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	defer release(src, f, fh)

	for _, tt := range []struct {
		name                 string
		nextNode, nextHandle uint64
		want                 string
	}{
		{"node counter at the end", 1<<64 - 1, 10, "next node id"},
		{"node counter past the end", 1<<63 + 1, 10, "next node id"},
		{"handle counter at the end", 10, 1<<64 - 1, "next handle id"},
		{"handle counter zero", 10, 0, "next handle id"},
	} {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			st := exportFor(t, src, ExportOptions{Mode: migrate.FindPaths})
			st.NextNode, st.NextHandle = tt.nextNode, tt.nextHandle
			b, err := migrate.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := migrate.Unmarshal(b); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Unmarshal: %v, want an error containing %q", err, tt.want)
			}
		})
	}

	if migrate.MaxNextID != inodestore.MaxID+1 {
		t.Fatalf("a state may set counters to %d, the store gives ids up to %d", uint64(migrate.MaxNextID), uint64(inodestore.MaxID))
	}
	t.Run("the last ids", func(t *testing.T) {
		st := exportFor(t, src, ExportOptions{Mode: migrate.FindPaths})
		st.NextNode, st.NextHandle = lastID, lastID
		b, err := migrate.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if st, err = migrate.Unmarshal(b); err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		dst := newDest(t, src, dir)
		if _, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort}); err != nil {
			t.Fatalf("ImportState: %v", err)
		}
		if g := mustLookup(t, dst, fuseproto.RootID, "g"); g != lastID {
			t.Errorf("new node %d, want %d", g, uint64(lastID))
		}
		if id, _, errno := lookup(t, dst, fuseproto.RootID, "h"); errno != unix.ENFILE {
			t.Errorf("lookup past the last node id: node %d, %v; want ENFILE", id, errno)
		}
		g2, errno := open(t, dst, f, unix.O_RDONLY)
		if errno != 0 || g2 != lastID {
			t.Errorf("new handle %d, %v; want %d", g2, errno, uint64(lastID))
		}
		if id, errno := open(t, dst, f, unix.O_RDONLY); errno != unix.ENFILE {
			t.Errorf("open past the last handle id: handle %d, %v; want ENFILE", id, errno)
		}
		mustFailCreate(t, dst, dir)
		// The restored handle is still the file's.
		if data, errno := read(t, dst, f, fh, 8); errno != 0 || string(data) != "x" {
			t.Errorf("read through the restored handle: %q, %v", data, errno)
		}
		if getattr(dst, fuseproto.RootID) != 0 || getattr(dst, f) != 0 {
			t.Error("the restored inodes no longer work")
		}
	})

	// Node ids left, handle ids spent: CREATE makes the inode, then gets
	// no handle.
	t.Run("the last handle id", func(t *testing.T) {
		st := exportFor(t, src, ExportOptions{Mode: migrate.FindPaths})
		st.NextHandle = lastID + 1
		dst := newDest(t, src, dir)
		if _, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort}); err != nil {
			t.Fatalf("ImportState: %v", err)
		}
		mustFailCreate(t, dst, dir)
	})
}

// mustFailCreate checks that a CREATE on dst fails with ENFILE and leaves
// neither the file nor its inode behind.
func mustFailCreate(t *testing.T, dst *FS, dir string) {
	t.Helper()
	before := dst.store.Len()
	var co fuse.CreateOut
	if errno := dst.Create(req(fuseproto.RootID), &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, "new", &co); errno != unix.ENFILE {
		t.Errorf("create past the last id: node %d handle %d, %v; want ENFILE", co.NodeId, co.Fh, errno)
	}
	mustNotExist(t, filepath.Join(dir, "new"))
	if n := dst.store.Len(); n != before {
		t.Errorf("a failed create left %d inodes, %d before", n, before)
	}
}
