package passthrough

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/migrate"
)

// fuzzTree is the shared directory the import fuzz targets import into,
// with a directory beside it that no import may reach, and the states an
// honest source serving it sends.
var fuzzTree struct {
	dir, outside  string
	seeds         [][]byte
	err           error
	fileHandlesOK bool
}

// setUpFuzzTree makes fuzzTree for one fuzz target, in its own temporary
// directory.
func setUpFuzzTree(f *testing.F) {
	fuzzTree.seeds, fuzzTree.err = nil, nil
	func() {
		top := f.TempDir()
		dir, outside := filepath.Join(top, "shared"), filepath.Join(top, "outside")
		for _, d := range []string{dir + "/a/b", outside + "/secret"} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				fuzzTree.err = err
				return
			}
		}
		for _, p := range []string{dir + "/a/f", dir + "/a/b/g", dir + "/top", outside + "/secret/s"} {
			if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
				fuzzTree.err = err
				return
			}
		}
		os.Symlink("../outside", filepath.Join(dir, "link"))
		fuzzTree.dir, fuzzTree.outside = dir, outside
		fuzzTree.fileHandlesOK = unix.Geteuid() == 0

		// The seeds: what a source serving the tree sends, in every
		// mode, with open handles and a file the guest removed.
		for _, mode := range []migrate.Mode{migrate.FindPaths, migrate.FileHandles} {
			if mode == migrate.FileHandles && !fuzzTree.fileHandlesOK {
				continue
			}
			src, err := New(Options{SharedDir: dir})
			if err != nil {
				fuzzTree.err = err
				return
			}
			var init fuse.InitOut
			src.Init(^uint64(0), &init)
			r := func(n fuseproto.NodeID) *fuseproto.Request {
				return &fuseproto.Request{Header: fuse.InHeader{NodeId: uint64(n)}}
			}
			var e fuse.EntryOut
			src.Lookup(r(1), 1, "a", &e)
			a := fuseproto.NodeID(e.NodeId)
			src.Lookup(r(a), a, "f", &e)
			f := fuseproto.NodeID(e.NodeId)
			src.Lookup(r(a), a, "b", &e)
			b := fuseproto.NodeID(e.NodeId)
			src.Lookup(r(b), b, "g", &e)
			src.Lookup(r(1), 1, "top", &e)
			src.Lookup(r(1), 1, "link", &e)
			var o fuse.OpenOut
			src.Open(r(f), &fuse.OpenIn{Flags: unix.O_RDWR}, &o)
			src.OpenDir(r(b), &fuse.OpenIn{Flags: unix.O_RDONLY | unix.O_DIRECTORY}, &o)
			sess := fuseproto.Session{Major: 7, Minor: 38, Flags: fuse.CAP_ASYNC_READ | fuse.CAP_READDIRPLUS, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: 1}
			st, err := src.ExportState(ExportOptions{Mode: mode, VerifyHandles: mode == migrate.FindPaths}, sess)
			if err == nil {
				if b, err := migrate.Marshal(st); err == nil {
					fuzzTree.seeds = append(fuzzTree.seeds, b)
				}
			}
			src.Destroy()
			src.Close()
		}
	}()
	if fuzzTree.err != nil {
		f.Fatal(fuzzTree.err)
	}
}

// FuzzImportState imports states made from an honest source's by mutation
// into a real shared directory, with both inode reference modes and both
// --migration-on-error settings. Whatever a state says, the import must
// not panic or hang, and every inode and handle it installs must be an
// object beneath the shared directory; a refused import installs nothing.
func FuzzImportState(f *testing.F) {
	setUpFuzzTree(f)
	for _, s := range fuzzTree.seeds {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, how uint8) {
		st, err := migrate.Unmarshal(b)
		if err != nil || !st.Mounted() {
			return
		}
		importChecked(t, st, how)
	})
}

// FuzzImportStateFields changes one field of an honest source's state at
// a time (most byte mutations do not survive decoding), then imports it as
// FuzzImportState does.
func FuzzImportStateFields(f *testing.F) {
	setUpFuzzTree(f)
	for k := range fuzzTree.seeds {
		f.Add(uint8(k), uint8(0), uint16(0), uint8(0), uint64(0), "")
		f.Add(uint8(k), uint8(3), uint16(2), uint8(3), uint64(1), "../outside")
		f.Add(uint8(k), uint8(1), uint16(1), uint8(9), uint64(unix.O_TMPFILE|unix.O_RDWR), "")
	}
	f.Fuzz(func(t *testing.T, seed, how uint8, idx uint16, field uint8, val uint64, name string) {
		if len(fuzzTree.seeds) == 0 {
			return
		}
		st, err := migrate.Unmarshal(fuzzTree.seeds[int(seed)%len(fuzzTree.seeds)])
		if err != nil {
			t.Fatal(err)
		}
		mutateField(st, int(idx), field, val, name)
		b, err := migrate.Marshal(st)
		if err != nil {
			return
		}
		if st, err = migrate.Unmarshal(b); err != nil || !st.Mounted() {
			return
		}
		importChecked(t, st, how)
	})
}

// mutateField sets one field of st, chosen by field, of inode or handle
// idx, to val or name.
func mutateField(st *migrate.State, idx int, field uint8, val uint64, name string) {
	if len(st.Inodes) > 0 && field < 9 {
		i := &st.Inodes[idx%len(st.Inodes)]
		switch field {
		case 0:
			i.ID = val
		case 1:
			i.Parent = val
		case 2:
			i.Name = name
		case 3:
			i.Type = uint32(val)
		case 4:
			i.Lookups = val
		case 5:
			if i.Handle != nil {
				i.Handle.Bytes = []byte(name)
				i.Handle.Type = int32(val)
			}
		case 6:
			i.Unlinked = val&1 != 0
			i.Name = name
		case 7:
			i.Invalid, i.Gone, i.Lost = name, val&1 != 0, uint32(val>>1)
		case 8:
			i.Parent, i.Name = val, name
		}
		return
	}
	if len(st.Handles) > 0 && field < 12 {
		h := &st.Handles[idx%len(st.Handles)]
		switch field {
		case 9:
			h.Flags, h.GuestFlags = int32(val), uint32(val)
		case 10:
			h.Node = val
		case 11:
			h.Lost = uint32(val)
		}
		return
	}
	switch field % 4 {
	case 0:
		st.Session.Flags = val
	case 1:
		st.NextNode = val
	case 2:
		st.NextHandle = val
	case 3:
		st.Session.Minor, st.Session.MaxWrite = uint32(val), uint32(val>>32)
	}
}

// importChecked imports st into the fuzz tree (inode reference mode and
// --migration-on-error chosen by how) and checks what it installed.
func importChecked(t *testing.T, st *migrate.State, how uint8) {
	if st.Mode == migrate.FileHandles && !fuzzTree.fileHandlesOK {
		return
	}
	handles := []inodestore.FileHandleMode{inodestore.FileHandlesNever, inodestore.FileHandlesMandatory}[how&1]
	onError := []migrate.OnError{migrate.Abort, migrate.GuestError}[how>>1&1]
	dst, err := New(Options{SharedDir: fuzzTree.dir, InodeFileHandles: handles, MaxGuestFDs: 10000})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := dst.ImportState(st, ImportOptions{OnError: onError}); err != nil {
		if n, h := dst.store.Len(), dst.store.HandleCount(); n != 1 || h != 0 {
			t.Fatalf("a refused import left %d inodes and %d handles: %v", n, h, err)
		}
		return
	}
	snap := dst.store.Snapshot()
	defer dst.store.Release(snap)
	for _, e := range snap.Inodes {
		if e.Inode.Lost() != 0 {
			continue
		}
		pfd, err := dst.store.PathFDUncached(e.Inode)
		if err != nil {
			continue // gone since, or a handle that no longer opens
		}
		link, err := dst.readLink(pfd.FD)
		pfd.Close()
		if err == nil && link != fuzzTree.dir && !strings.HasPrefix(link, fuzzTree.dir+"/") {
			t.Fatalf("inode %d is %s, outside the shared directory %s", e.Inode.ID, link, fuzzTree.dir)
		}
	}
}
