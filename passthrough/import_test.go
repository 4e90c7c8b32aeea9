package passthrough

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/migrate"
)

// TestImportState: a destination rebuilt from a source's state serves the
// guest's node ids and open handles as the source did, continues the ids,
// and refuses a state it cannot honour without changing anything.
func TestImportState(t *testing.T) {
	for _, mode := range []migrate.Mode{migrate.FindPaths, migrate.FileHandles} {
		t.Run(string(mode), func(t *testing.T) {
			forEachMode(t, Options{Writeback: true}, func(t *testing.T, src *FS, dir string) {
				if mode == migrate.FileHandles && unix.Geteuid() != 0 {
					t.Skip("opening file handles needs CAP_DAC_READ_SEARCH")
				}
				os.MkdirAll(filepath.Join(dir, "d/sub"), 0o755)
				writeHostFile(t, filepath.Join(dir, "d/sub/f"), "0123456789")
				d := mustLookup(t, src, fuseproto.RootID, "d")
				sub := mustLookup(t, src, d, "sub")
				f := mustLookup(t, src, sub, "f")
				fh, errno := open(t, src, f, unix.O_RDWR|unix.O_TRUNC)
				if errno != 0 {
					t.Fatal(errno)
				}
				// Written after the open: re-opening with O_TRUNC on
				// the destination would lose it.
				if _, errno := src.Write(req(f), &fuse.WriteIn{Fh: fh, Size: 5}, [][]byte{[]byte("hello")}); errno != 0 {
					t.Fatal(errno)
				}
				sess := fuseproto.Session{Major: 7, Minor: 38, Flags: fuse.CAP_WRITEBACK_CACHE, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: 1}
				st, err := src.ExportState(ExportOptions{Mode: mode}, sess)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := migrate.Marshal(st)
				st, err = migrate.Unmarshal(b)
				if err != nil {
					t.Fatal(err)
				}

				dst, err := New(Options{SharedDir: dir, Writeback: true, InodeFileHandles: src.opts.InodeFileHandles})
				if err != nil {
					t.Fatal(err)
				}
				defer dst.Close()
				got, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort})
				if err != nil {
					t.Fatalf("ImportState: %v", err)
				}
				if got != sess || !dst.writeback.Load() {
					t.Errorf("session %+v (writeback %v), want %+v", got, dst.writeback.Load(), sess)
				}
				// The guest's node ids and handle work on the destination.
				data, errno := read(t, dst, f, fh, 64)
				if errno != 0 || string(data) != "hello" {
					t.Fatalf("read through the migrated handle: %q, %v", data, errno)
				}
				var ao fuse.AttrOut
				if errno := dst.GetAttr(req(sub), &fuse.GetAttrIn{}, &ao); errno != 0 || ao.Mode&unix.S_IFMT != unix.S_IFDIR {
					t.Fatalf("getattr of migrated node %d: %v", sub, errno)
				}
				if again := mustLookup(t, dst, sub, "f"); again != f {
					t.Errorf("lookup of a known file gave node %d, want %d", again, f)
				}
				writeHostFile(t, filepath.Join(dir, "new"), "")
				if n := mustLookup(t, dst, fuseproto.RootID, "new"); uint64(n) < st.NextNode {
					t.Errorf("new node id %d reuses the source's range (next was %d)", n, st.NextNode)
				}
				if lookups, _ := dst.store.Lookups(f); lookups != 2 {
					t.Errorf("lookups of f: %d, want 2 (1 migrated + 1 new)", lookups)
				}
				release(dst, f, fh)
				var oo fuse.OpenOut
				if errno := dst.Open(req(f), &fuse.OpenIn{Flags: unix.O_RDONLY}, &oo); errno != 0 || oo.Fh < st.NextHandle {
					t.Errorf("new handle %d (errno %v), want one from %d on", oo.Fh, errno, st.NextHandle)
				}
				release(src, f, fh)
			})
		})
	}
}

func TestImportStateRefuses(t *testing.T) {
	src, dir := newFS(t, Options{})
	writeHostFile(t, filepath.Join(dir, "f"), "x")
	mustLookup(t, src, fuseproto.RootID, "f")
	sess := fuseproto.Session{Major: 7, Minor: 38, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: 1}
	st, err := src.ExportState(ExportOptions{Mode: migrate.FindPaths}, sess)
	if err != nil {
		t.Fatal(err)
	}

	other, err := New(Options{SharedDir: dir, Xattr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ImportState(st, ImportOptions{OnError: migrate.Abort}); err == nil || !strings.Contains(err.Error(), "xattr: source false, destination true") {
		t.Fatalf("import with other options: %v", err)
	}

	os.Remove(filepath.Join(dir, "f"))
	dst, err := New(Options{SharedDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort}); err == nil || !strings.Contains(err.Error(), "1 of 2 inodes not found") {
		t.Fatalf("import with a missing file: %v", err)
	}
	if n := dst.store.Len(); n != 1 {
		t.Fatalf("a refused import left %d inodes", n)
	}
}
