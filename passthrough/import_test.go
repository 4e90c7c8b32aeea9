package passthrough

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/migrate"
)

// TestImportState: a destination rebuilt from a source's state serves the
// guest's node ids and open handles as the source did, continues the ids,
// and refuses a state it cannot honour without changing anything.
func TestImportState(t *testing.T) {
	forEachMigrationMode(t, Options{Writeback: true}, func(t *testing.T, mode migrate.Mode, src *FS, dir string) {
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
		rep, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort})
		if err != nil {
			t.Fatalf("ImportState: %v", err)
		}
		if rep.Session != sess || !dst.writeback.Load() {
			t.Errorf("session %+v (writeback %v), want %+v", rep.Session, dst.writeback.Load(), sess)
		}
		if rep.LostInodes != 0 || rep.LostHandles != 0 || len(rep.Lost) != 0 {
			t.Errorf("report %+v: nothing should be lost", rep)
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

// exportFor exports src's state as a migration source does and decodes it
// as a destination does.
func exportFor(t *testing.T, src *FS, opts ExportOptions) *migrate.State {
	t.Helper()
	sess := fuseproto.Session{Major: 7, Minor: 38, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: 1}
	st, err := src.ExportState(opts, sess)
	if err != nil {
		t.Fatal(err)
	}
	b, err := migrate.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = migrate.Unmarshal(b); err != nil {
		t.Fatalf("exported state does not validate: %v", err)
	}
	return st
}

// newDest returns a destination serving dir as src does, with a
// descriptor budget so that descriptors counted wrongly show.
func newDest(t *testing.T, src *FS, dir string) *FS {
	t.Helper()
	dst, err := New(Options{SharedDir: dir, InodeFileHandles: src.opts.InodeFileHandles, MaxGuestFDs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })
	return dst
}

func getattr(fs *FS, node fuseproto.NodeID) syscall.Errno {
	var out fuse.AttrOut
	return fs.GetAttr(req(node), &fuse.GetAttrIn{}, &out)
}

// TestImportGuestError: with --migration-on-error=guest-error what can be
// found is restored and works; what cannot (a removed file, a removed
// directory and the file the guest knew in it, a name that is now another
// type of object, a handle the host refuses to re-open) keeps its ids and
// answers with a fitting errno, is forgotten and released normally, and
// does not stand in the way of a fresh lookup of its name. With abort the
// same state is refused and nothing is applied.
func TestImportGuestError(t *testing.T) {
	forEachMigrationMode(t, Options{}, func(t *testing.T, mode migrate.Mode, src *FS, dir string) {
		os.MkdirAll(filepath.Join(dir, "keep"), 0o755)
		os.MkdirAll(filepath.Join(dir, "lostdir"), 0o755)
		writeHostFile(t, filepath.Join(dir, "keep/f"), "kept")
		writeHostFile(t, filepath.Join(dir, "lostdir/inner"), "inner")
		writeHostFile(t, filepath.Join(dir, "gone"), "gone")
		writeHostFile(t, filepath.Join(dir, "retyped"), "file")
		writeHostFile(t, filepath.Join(dir, "frozen"), "frozen")
		keep := mustLookup(t, src, fuseproto.RootID, "keep")
		f := mustLookup(t, src, keep, "f")
		gone := mustLookup(t, src, fuseproto.RootID, "gone")
		mustLookup(t, src, fuseproto.RootID, "gone") // two lookups
		lostdir := mustLookup(t, src, fuseproto.RootID, "lostdir")
		inner := mustLookup(t, src, lostdir, "inner")
		retyped := mustLookup(t, src, fuseproto.RootID, "retyped")
		frozen := mustLookup(t, src, fuseproto.RootID, "frozen")
		fh, errno := open(t, src, f, unix.O_RDONLY)
		goneFH, errno2 := open(t, src, gone, unix.O_RDONLY)
		var do fuse.OpenOut
		errno3 := src.OpenDir(req(lostdir), &fuse.OpenIn{Flags: unix.O_RDONLY}, &do)
		frozenFH, errno4 := open(t, src, frozen, unix.O_RDWR)
		if errno != 0 || errno2 != 0 || errno3 != 0 || errno4 != 0 {
			t.Fatal(errno, errno2, errno3, errno4)
		}
		st := exportFor(t, src, ExportOptions{Mode: mode})
		// The source lets go (as it does once the destination
		// runs), so that removed objects are gone for file
		// handles too.
		src.Destroy()

		os.Remove(filepath.Join(dir, "gone"))
		os.RemoveAll(filepath.Join(dir, "lostdir"))
		os.Remove(filepath.Join(dir, "retyped"))
		os.Mkdir(filepath.Join(dir, "retyped"), 0o755)
		// An immutable file cannot be opened for writing, even
		// by root: the handle's re-open fails with EPERM.
		frozenLost := setImmutable(t, filepath.Join(dir, "frozen"))

		abort := newDest(t, src, dir)
		if _, err := abort.ImportState(st, ImportOptions{OnError: migrate.Abort}); err == nil || !strings.Contains(err.Error(), "4 of 8 inodes not found") {
			t.Fatalf("abort import: %v, want 4 of 8 inodes not found", err)
		}
		if n, used := abort.store.Len(), abort.store.Budget().Used(); n != 1 || used != 0 {
			t.Fatalf("a refused import left %d inodes and %d descriptors", n, used)
		}

		dst := newDest(t, src, dir)
		rep, err := dst.ImportState(st, ImportOptions{OnError: migrate.GuestError})
		if err != nil {
			t.Fatalf("guest-error import: %v", err)
		}
		wantHandles := 2 // gone's and lostdir's
		if frozenLost {
			wantHandles++
		}
		if rep.LostInodes != 4 || rep.LostHandles != wantHandles || len(rep.Lost) != 4+wantHandles {
			t.Errorf("report: %d inodes, %d handles lost (%v), want 4 and %d", rep.LostInodes, rep.LostHandles, rep.Lost, wantHandles)
		}

		// What was found works.
		if errno := getattr(dst, keep); errno != 0 {
			t.Errorf("getattr of a found directory: %v", errno)
		}
		if data, errno := read(t, dst, f, fh, 64); errno != 0 || string(data) != "kept" {
			t.Errorf("read through a found handle: %q, %v", data, errno)
		}
		if errno := getattr(dst, frozen); errno != 0 {
			t.Errorf("getattr of a found file whose handle was lost: %v", errno)
		}
		// What was lost answers with ESTALE, below a lost
		// directory too.
		for _, n := range []fuseproto.NodeID{gone, lostdir, inner, retyped} {
			if errno := getattr(dst, n); errno != syscall.ESTALE {
				t.Errorf("getattr of lost node %d: %v, want ESTALE", n, errno)
			}
		}
		if _, errno := open(t, dst, gone, unix.O_RDONLY); errno != syscall.ESTALE {
			t.Errorf("open of a lost file: %v, want ESTALE", errno)
		}
		if _, _, errno := lookup(t, dst, lostdir, "inner"); errno != syscall.ESTALE {
			t.Errorf("lookup in a lost directory: %v, want ESTALE", errno)
		}
		var co fuse.CreateOut
		if errno := dst.Create(req(lostdir), &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, "new", &co); errno != syscall.ESTALE {
			t.Errorf("create in a lost directory: %v, want ESTALE", errno)
		}
		if _, errno := read(t, dst, gone, goneFH, 64); errno != syscall.ESTALE {
			t.Errorf("read through a lost handle: %v, want ESTALE", errno)
		}
		if errno := dst.FsyncDir(req(lostdir), &fuse.FsyncIn{Fh: do.Fh}); errno != syscall.ESTALE {
			t.Errorf("fsyncdir through a lost handle: %v, want ESTALE", errno)
		}
		if frozenLost {
			if _, errno := read(t, dst, frozen, frozenFH, 64); errno != syscall.EPERM {
				t.Errorf("read through a handle the host refused to re-open: %v, want EPERM", errno)
			}
		}

		// Lost handles release, lost inodes are forgotten.
		release(dst, gone, goneFH)
		dst.ReleaseDir(req(lostdir), &fuse.ReleaseIn{Fh: do.Fh})
		release(dst, frozen, frozenFH)
		if _, errno := read(t, dst, gone, goneFH, 64); errno != syscall.EBADF {
			t.Errorf("read through a released lost handle: %v, want EBADF", errno)
		}
		dst.Forget(gone, 1)
		if n, ok := dst.store.Lookups(gone); !ok || n != 1 {
			t.Errorf("lookups of a lost node after one forget: %d %v, want 1", n, ok)
		}
		for _, n := range []fuseproto.NodeID{gone, inner, lostdir, retyped} {
			dst.Forget(n, 1)
		}
		if _, ok := dst.store.Lookups(gone); ok {
			t.Error("a forgotten lost node is still known")
		}

		// The names lead to working inodes again.
		writeHostFile(t, filepath.Join(dir, "gone"), "again")
		again := mustLookup(t, dst, fuseproto.RootID, "gone")
		if again == gone {
			t.Errorf("lookup of a re-created name gave the lost node %d", gone)
		}
		againFH, errno := open(t, dst, again, unix.O_RDONLY)
		if errno != 0 {
			t.Fatalf("open of a re-created file: %v", errno)
		}
		if data, errno := read(t, dst, again, againFH, 64); errno != 0 || string(data) != "again" {
			t.Errorf("read of a re-created file: %q, %v", data, errno)
		}
		release(dst, again, againFH)
		if d := mustLookup(t, dst, fuseproto.RootID, "retyped"); d == retyped || getattr(dst, d) != 0 {
			t.Errorf("lookup of a name lost to another type: node %d (lost %d)", d, retyped)
		}

		release(dst, f, fh)
		dst.Destroy()
		if used := dst.store.Budget().Used(); used != 0 {
			t.Errorf("%d descriptors counted after everything was released", used)
		}
	})
}

// setImmutable makes path immutable until the test ends and reports
// whether it could (it needs CAP_LINUX_IMMUTABLE and a file system that
// has the flag).
func setImmutable(t *testing.T, path string) bool {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetInt(fd, unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, flags|fsImmutable)
	}
	if err != nil {
		t.Logf("cannot make %s immutable (%v): not testing a refused re-open", path, err)
		return false
	}
	t.Cleanup(func() { clearImmutable(t, path) })
	return true
}

// clearImmutable undoes setImmutable.
func clearImmutable(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetInt(fd, unix.FS_IOC_GETFLAGS)
	if err == nil && flags&fsImmutable != 0 {
		// Only that flag: ext4 refuses to clear some others (extents).
		err = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, flags&^fsImmutable)
	}
	if err != nil {
		t.Errorf("clear the immutable flag of %s: %v", path, err)
	}
}

const fsImmutable = 0x10 // FS_IMMUTABLE_FL

// TestImportChained: what one migration lost (guest-error) stays lost,
// with its errno, through the next migration, and does not fail that one
// even with abort: a file removed on the host and a handle the host refused
// to re-open. The handle is not revived when the host would now allow it.
func TestImportChained(t *testing.T) {
	forEachMigrationMode(t, Options{}, func(t *testing.T, mode migrate.Mode, src *FS, dir string) {
		writeHostFile(t, filepath.Join(dir, "keep"), "kept")
		writeHostFile(t, filepath.Join(dir, "gone"), "gone")
		writeHostFile(t, filepath.Join(dir, "frozen"), "frozen")
		keep := mustLookup(t, src, fuseproto.RootID, "keep")
		gone := mustLookup(t, src, fuseproto.RootID, "gone")
		frozen := mustLookup(t, src, fuseproto.RootID, "frozen")
		keepFH, errno := open(t, src, keep, unix.O_RDONLY)
		goneFH, errno2 := open(t, src, gone, unix.O_RDONLY)
		frozenFH, errno3 := open(t, src, frozen, unix.O_RDWR)
		if errno != 0 || errno2 != 0 || errno3 != 0 {
			t.Fatal(errno, errno2, errno3)
		}
		st := exportFor(t, src, ExportOptions{Mode: mode})
		src.Destroy()
		os.Remove(filepath.Join(dir, "gone"))
		frozenLost := setImmutable(t, filepath.Join(dir, "frozen"))

		mid := newDest(t, src, dir)
		if _, err := mid.ImportState(st, ImportOptions{OnError: migrate.GuestError}); err != nil {
			t.Fatalf("first import (guest-error): %v", err)
		}
		st = exportFor(t, mid, ExportOptions{Mode: mode})
		for _, i := range st.Inodes {
			if i.ID == uint64(gone) && (i.Lost != uint32(syscall.ESTALE) || !i.LostAtSource()) {
				t.Errorf("the lost inode is sent as %+v, want lost with ESTALE", i)
			}
		}
		wantLostHandles := 1
		if frozenLost {
			wantLostHandles++
			// The host would re-open it now; the guest was
			// told it is gone, and it stays gone.
			clearImmutable(t, filepath.Join(dir, "frozen"))
		}
		lostHandles := 0
		for _, h := range st.Handles {
			if h.Lost != 0 {
				lostHandles++
			}
		}
		if lostHandles != wantLostHandles {
			t.Errorf("second state: %d lost handles, want %d (%+v)", lostHandles, wantLostHandles, st.Handles)
		}
		mid.Destroy()

		dst := newDest(t, src, dir)
		rep, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort})
		if err != nil {
			t.Fatalf("second import (abort): %v", err)
		}
		if rep.LostAtSource != 1+wantLostHandles || rep.LostInodes != 0 || rep.LostHandles != 0 {
			t.Errorf("report: %+v, want %d lost at the source and nothing lost here", rep, 1+wantLostHandles)
		}
		if data, errno := read(t, dst, keep, keepFH, 64); errno != 0 || string(data) != "kept" {
			t.Errorf("read through a handle that moved twice: %q, %v", data, errno)
		}
		if errno := getattr(dst, gone); errno != syscall.ESTALE {
			t.Errorf("getattr of the inode lost in the first migration: %v, want ESTALE", errno)
		}
		if _, errno := read(t, dst, gone, goneFH, 64); errno != syscall.ESTALE {
			t.Errorf("read through the handle lost with its inode: %v, want ESTALE", errno)
		}
		if frozenLost {
			if _, errno := read(t, dst, frozen, frozenFH, 64); errno != syscall.EPERM {
				t.Errorf("read through the handle the host refused in the first migration: %v, want EPERM", errno)
			}
		}
		for _, h := range []struct {
			node fuseproto.NodeID
			fh   uint64
		}{{keep, keepFH}, {gone, goneFH}, {frozen, frozenFH}} {
			release(dst, h.node, h.fh)
		}
		dst.Destroy()
		if used := dst.store.Budget().Used(); used != 0 {
			t.Errorf("%d descriptors counted after everything was released", used)
		}
	})
}

// TestImportVerifyHandles: with --migration-verify-handles a find-paths
// state carries file handles, and a destination whose path leads to
// another object than the source's (a file replaced by a new one of the
// same name) refuses it (abort) or loses it (guest-error); an unchanged
// file passes.
func TestImportVerifyHandles(t *testing.T) {
	tests := []struct {
		name    string
		replace bool
		onError migrate.OnError
		wantErr string        // from ImportState
		want    syscall.Errno // from GETATTR of the file afterwards
	}{
		{"unchanged abort", false, migrate.Abort, "", 0},
		{"unchanged guest-error", false, migrate.GuestError, "", 0},
		{"replaced abort", true, migrate.Abort, "different object than the source's", 0},
		{"replaced guest-error", true, migrate.GuestError, "", syscall.ESTALE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachMode(t, Options{}, func(t *testing.T, src *FS, dir string) {
				writeHostFile(t, filepath.Join(dir, "f"), "old")
				f := mustLookup(t, src, fuseproto.RootID, "f")
				st := exportFor(t, src, ExportOptions{Mode: migrate.FindPaths, VerifyHandles: true})
				for _, i := range st.Inodes {
					if i.ID == uint64(f) && (i.Handle == nil || i.Name != "f") {
						t.Fatalf("inode %+v: want its name and its file handle", i)
					}
				}
				if tt.replace {
					// The source still holds the old file, so the new
					// one cannot reuse its inode number.
					writeHostFile(t, filepath.Join(dir, "new"), "new")
					if err := os.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "f")); err != nil {
						t.Fatal(err)
					}
				}
				root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(root)
				if missing := migrate.Verify(st, root); tt.replace != (len(missing) == 1 && errors.Is(missing[0].Err, migrate.ErrOtherObject)) {
					t.Errorf("migrate.Verify: %+v", missing)
				}

				dst := newDest(t, src, dir)
				rep, err := dst.ImportState(st, ImportOptions{OnError: tt.onError})
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("ImportState: %v, want an error with %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("ImportState: %v", err)
				}
				if lost := rep.LostInodes == 1; lost != tt.replace {
					t.Errorf("lost %d inodes: %v", rep.LostInodes, rep.Lost)
				}
				if errno := getattr(dst, f); errno != tt.want {
					t.Errorf("getattr: %v, want %v", errno, tt.want)
				}
			})
		})
	}
}

// TestImportGone: an inode the guest only had cached when the host removed
// it is marked gone by a find-paths source, and even with abort the
// destination migrates everything else and answers that inode with ESTALE.
// Had the guest held it open, it is not gone, and abort refuses the state.
func TestImportGone(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, src *FS, dir string) {
		writeHostFile(t, filepath.Join(dir, "cached"), "c")
		writeHostFile(t, filepath.Join(dir, "held"), "h")
		writeHostFile(t, filepath.Join(dir, "kept"), "k")
		cached := mustLookup(t, src, fuseproto.RootID, "cached")
		held := mustLookup(t, src, fuseproto.RootID, "held")
		kept := mustLookup(t, src, fuseproto.RootID, "kept")
		fh, errno := open(t, src, held, unix.O_RDONLY)
		if errno != 0 {
			t.Fatal(errno)
		}
		os.Remove(filepath.Join(dir, "cached"))
		st := exportFor(t, src, ExportOptions{Mode: migrate.FindPaths})
		dst := newDest(t, src, dir)
		if _, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort}); err != nil {
			t.Fatalf("abort import with only a gone inode: %v", err)
		}
		if errno := getattr(dst, cached); errno != syscall.ESTALE {
			t.Errorf("getattr of the gone inode: %v, want ESTALE", errno)
		}
		if errno := getattr(dst, kept); errno != 0 {
			t.Errorf("getattr of a kept inode: %v", errno)
		}
		release(dst, held, fh)

		os.Remove(filepath.Join(dir, "held"))
		st = exportFor(t, src, ExportOptions{Mode: migrate.FindPaths})
		if _, err := newDest(t, src, dir).ImportState(st, ImportOptions{OnError: migrate.Abort}); err == nil || !strings.Contains(err.Error(), "1 of 4 inodes not found") {
			t.Fatalf("abort import with an open file removed on the host: %v, want a refusal for that one inode", err)
		}
	})
}

// TestImportHoldsNoDescriptorPerInode: with file handles a destination
// holds descriptors only for the directories it resolves names in and the
// files the guest holds open, not one per inode the guest knows, so a guest
// that knows millions of inodes migrates within the descriptor limit.
func TestImportHoldsNoDescriptorPerInode(t *testing.T) {
	requireRoot(t)
	const files = 2000
	for _, mode := range []migrate.Mode{migrate.FindPaths, migrate.FileHandles} {
		t.Run(string(mode), func(t *testing.T) {
			src, dir := newFS(t, Options{InodeFileHandles: inodestore.FileHandlesMandatory})
			if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
				t.Fatal(err)
			}
			for k := range files {
				writeHostFile(t, filepath.Join(dir, "d", strconv.Itoa(k)), "")
			}
			d := mustLookup(t, src, fuseproto.RootID, "d")
			for k := range files {
				mustLookup(t, src, d, strconv.Itoa(k))
			}
			st := exportFor(t, src, ExportOptions{Mode: mode})
			dst := newDest(t, src, dir)
			before := openFDs(t)
			if _, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort}); err != nil {
				t.Fatal(err)
			}
			if grown := openFDs(t) - before; grown > 50 {
				t.Errorf("the import left %d more descriptors open for %d inodes", grown, files+1)
			}
			if errno := getattr(dst, d+files); errno != 0 {
				t.Errorf("getattr of the last file: %v", errno)
			}
		})
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestMigrateMany: a state large enough that export describes its inodes
// and import finds them on several goroutines (run it with -race), in a
// tree three levels deep, moves every inode with its lookups, and a file
// deep down reads through the destination. One directory removed on the
// host before the import is lost with everything below it (guest-error).
func TestMigrateMany(t *testing.T) {
	const dirs, files = 4, 200
	forEachMigrationMode(t, Options{}, func(t *testing.T, mode migrate.Mode, src *FS, dir string) {
		var all, lostBelow []fuseproto.NodeID
		var deep fuseproto.NodeID
		for d := range dirs {
			name := fmt.Sprintf("d%d", d)
			os.MkdirAll(filepath.Join(dir, name, "sub"), 0o755)
			dn := mustLookup(t, src, fuseproto.RootID, name)
			sub := mustLookup(t, src, dn, "sub")
			all = append(all, dn, sub)
			if d == dirs-1 {
				lostBelow = append(lostBelow, dn, sub)
			}
			for f := range files {
				fname := fmt.Sprintf("f%d", f)
				writeHostFile(t, filepath.Join(dir, name, "sub", fname), name+"/"+fname)
				n := mustLookup(t, src, sub, fname)
				all = append(all, n)
				if d == dirs-1 {
					lostBelow = append(lostBelow, n)
				}
				if d == 0 && f == files-1 {
					deep = n
				}
			}
		}
		st := exportFor(t, src, ExportOptions{Mode: mode})
		if got, want := len(st.Inodes), len(all)+1; got != want {
			t.Fatalf("state has %d inodes, want %d", got, want)
		}
		for _, i := range st.Inodes {
			if i.Invalid != "" {
				t.Fatalf("inode %d not described: %s", i.ID, i.Invalid)
			}
		}
		src.Destroy()
		os.RemoveAll(filepath.Join(dir, fmt.Sprintf("d%d", dirs-1)))

		dst := newDest(t, src, dir)
		rep, err := dst.ImportState(st, ImportOptions{OnError: migrate.GuestError})
		if err != nil {
			t.Fatal(err)
		}
		if rep.LostInodes != len(lostBelow) {
			t.Errorf("%d inodes lost, want the %d of the removed directory", rep.LostInodes, len(lostBelow))
		}
		lost := make(map[fuseproto.NodeID]bool)
		for _, n := range lostBelow {
			lost[n] = true
		}
		for _, n := range all {
			want := syscall.Errno(0)
			if lost[n] {
				want = syscall.ESTALE
			}
			if errno := getattr(dst, n); errno != want {
				t.Fatalf("getattr of node %d after the migration: %v, want %v", n, errno, want)
			}
			if l, ok := dst.store.Lookups(n); !ok || l != 1 {
				t.Fatalf("node %d has %d lookups (known %v), want 1", n, l, ok)
			}
		}
		fh, errno := open(t, dst, deep, unix.O_RDONLY)
		if errno != 0 {
			t.Fatal(errno)
		}
		if data, errno := read(t, dst, deep, fh, 64); errno != 0 || string(data) != fmt.Sprintf("d0/f%d", files-1) {
			t.Errorf("read through the destination: %q, %v", data, errno)
		}
		release(dst, deep, fh)
	})
}
