package passthrough

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/idmap"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/migrate"
)

// These tests hand a destination states no honest source sends: a state
// comes from another host, through a front-end that may be hostile, and
// whatever it says the destination serves nothing outside its shared
// directory, grants no capability and opens no file in a way its own
// options forbid.

// hostHandle returns the file handle of path, made with name_to_handle_at
// flags (0, or AT_HANDLE_CONNECTABLE).
func hostHandle(t *testing.T, path string, flags int) *migrate.FileHandle {
	t.Helper()
	h, mnt, err := unix.NameToHandleAt(unix.AT_FDCWD, path, flags)
	if err != nil {
		if flags != 0 && errors.Is(err, unix.EINVAL) {
			t.Skipf("the kernel makes no connectable handles: %v", err)
		}
		t.Fatalf("name_to_handle_at %s: %v", path, err)
	}
	return &migrate.FileHandle{MountID: uint64(mnt), Type: h.Type(), Bytes: h.Bytes()}
}

// forged is a state exported by src in mode with extra appended after
// every inode the source described, with node ids after the source's.
func forged(t *testing.T, src *FS, mode migrate.Mode, extra ...migrate.Inode) *migrate.State {
	t.Helper()
	st := exportFor(t, src, ExportOptions{Mode: mode})
	for _, i := range extra {
		i.ID = st.NextNode
		st.NextNode++
		if i.Lookups == 0 {
			i.Lookups = 1
		}
		st.Inodes = append(st.Inodes, i)
	}
	b, err := migrate.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = migrate.Unmarshal(b); err != nil {
		t.Fatalf("the forged state does not pass validation, so this test shows nothing: %v", err)
	}
	return st
}

// TestImportRefusesHandlesOutside: a file-handles state may carry the
// handle of any object on the shared directory's file system. A directory
// and a file beside the shared directory, by plain and by connectable
// handle, are not found: with abort the state is refused naming them, with
// guest-error they answer ESTALE, and the guest reads and creates nothing
// outside. What the source really described is still found.
func TestImportRefusesHandlesOutside(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("opening file handles needs CAP_DAC_READ_SEARCH")
	}
	forEachMode(t, Options{}, func(t *testing.T, src *FS, dir string) {
		outside := outsideDir(t, dir)
		writeHostFile(t, filepath.Join(outside, "secret"), "secret")
		writeHostFile(t, filepath.Join(dir, "mine"), "mine")
		mine := mustLookup(t, src, fuseproto.RootID, "mine")

		type forgery struct {
			name string
			ino  migrate.Inode
		}
		forgeries := []forgery{
			{"directory beside the share", migrate.Inode{Type: unix.S_IFDIR, Handle: hostHandle(t, outside, 0)}},
			{"file beside the share", migrate.Inode{Type: unix.S_IFREG, Handle: hostHandle(t, filepath.Join(outside, "secret"), 0)}},
			{"the share's parent", migrate.Inode{Type: unix.S_IFDIR, Handle: hostHandle(t, filepath.Dir(dir), 0)}},
			{"connectable file beside the share", migrate.Inode{Type: unix.S_IFREG, Handle: hostHandle(t, filepath.Join(outside, "secret"), 0x002 /* AT_HANDLE_CONNECTABLE */)}},
		}
		var extra []migrate.Inode
		for _, f := range forgeries {
			extra = append(extra, f.ino)
		}
		st := forged(t, src, migrate.FileHandles, extra...)
		forgedIDs := st.Inodes[len(st.Inodes)-len(forgeries):]

		dst := newDest(t, src, dir)
		_, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort})
		if err == nil {
			t.Fatal("abort: a state with handles of objects outside the shared directory was accepted")
		}
		for k, f := range forgeries {
			if id := forgedIDs[k].ID; !strings.Contains(err.Error(), "inode "+strconv.FormatUint(id, 10)+" ") {
				t.Errorf("abort: the error does not name inode %d (%s): %v", id, f.name, err)
			}
		}
		if n := dst.store.Len(); n != 1 {
			t.Errorf("a refused import left %d inodes", n)
		}

		dst = newDest(t, src, dir)
		rep, err := dst.ImportState(st, ImportOptions{OnError: migrate.GuestError})
		if err != nil {
			t.Fatalf("guest-error: %v", err)
		}
		if rep.LostInodes != len(forgeries) {
			t.Errorf("guest-error: %d inodes lost, want the %d forged ones", rep.LostInodes, len(forgeries))
		}
		for k, f := range forgeries {
			node := fuseproto.NodeID(forgedIDs[k].ID)
			if errno := getattr(dst, node); errno != syscall.ESTALE {
				t.Errorf("%s: getattr %v, want ESTALE", f.name, errno)
			}
			if f.ino.Type == unix.S_IFDIR {
				if _, _, errno := lookup(t, dst, node, "secret"); errno == 0 {
					t.Errorf("%s: the guest looked up a file outside the share", f.name)
				}
				var out fuse.CreateOut
				if errno := dst.Create(req(node), &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, "planted", &out); errno == 0 {
					t.Errorf("%s: the guest created a file through it", f.name)
				}
			} else {
				if _, errno := open(t, dst, node, unix.O_RDONLY); errno == 0 {
					t.Errorf("%s: the guest opened it", f.name)
				}
			}
		}
		mustNotExist(t, filepath.Join(outside, "planted"))
		mustNotExist(t, filepath.Join(filepath.Dir(dir), "planted"))
		if errno := getattr(dst, mine); errno != 0 {
			t.Errorf("the file the source described: getattr %v", errno)
		}
	})
}

// TestVerifyRefusesHandlesOutside: `ferryfs state verify` judges a state
// as a destination would: a handle of an object outside the shared
// directory is reported missing.
func TestVerifyRefusesHandlesOutside(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("opening file handles needs CAP_DAC_READ_SEARCH")
	}
	src, dir := newFS(t, Options{InodeFileHandles: inodestore.FileHandlesMandatory})
	outside := outsideDir(t, dir)
	st := forged(t, src, migrate.FileHandles, migrate.Inode{Type: unix.S_IFDIR, Handle: hostHandle(t, outside, 0)})
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	missing := migrate.Verify(st, root)
	if len(missing) != 1 || !errors.Is(missing[0].Err, migrate.ErrOutsideShare) {
		t.Fatalf("verify: %+v, want the directory outside reported", missing)
	}
}

// TestImportRefusesSessionBeyondOptions: the session in a state is applied
// without INIT, so it must be one this destination could have negotiated:
// no capability its options do not offer (a guest could otherwise label
// files with SECURITY_CTX on a daemon without --security-label, or get
// POSIX ACLs beside id translation), no protocol it does not speak, no
// requests larger than its buffers. A refused state applies nothing.
func TestImportRefusesSessionBeyondOptions(t *testing.T) {
	uids, err := idmap.ParseUIDMap([]string{"squash-guest:0:1000:1"})
	if err != nil {
		t.Fatal(err)
	}
	base := fuseproto.Session{Major: 7, Minor: 38, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: 1}
	with := func(f func(*fuseproto.Session)) fuseproto.Session { s := base; f(&s); return s }
	tests := []struct {
		name string
		opts Options
		sess fuseproto.Session
		want string // "" for a session the destination accepts
	}{
		{"plain", Options{}, base, ""},
		{"security label offered", Options{SecurityLabel: true}, with(func(s *fuseproto.Session) { s.Flags = fuse.CAP_SECURITY_CTX }), ""},
		{"security label not offered", Options{Xattr: true}, with(func(s *fuseproto.Session) { s.Flags = fuse.CAP_SECURITY_CTX }), "not offer"},
		{"ACLs with id translation", Options{UIDMap: uids}, with(func(s *fuseproto.Session) {
			s.Flags = fuse.CAP_POSIX_ACL | fuse.CAP_DONT_MASK | fuse.CAP_SETXATTR_EXT
		}), "not offer"},
		{"writeback not asked for", Options{}, with(func(s *fuseproto.Session) { s.Flags = fuse.CAP_WRITEBACK_CACHE }), "not offer"},
		{"locks the request layer refuses", Options{}, with(func(s *fuseproto.Session) { s.Flags = fuse.CAP_POSIX_LOCKS }), "not offer"},
		{"newer protocol", Options{}, with(func(s *fuseproto.Session) { s.Minor = 99 }), "protocol 7.99"},
		{"other major", Options{}, with(func(s *fuseproto.Session) { s.Major = 8 }), "protocol 8.38"},
		{"requests larger than the buffers", Options{}, with(func(s *fuseproto.Session) { s.MaxWrite = 1 << 30 }), "max_write"},
		{"pages beyond max_write", Options{}, with(func(s *fuseproto.Session) { s.MaxPages = 4096 }), "max_pages"},
		{"no time granularity", Options{}, with(func(s *fuseproto.Session) { s.TimeGran = 0 }), "granularity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dir := newFS(t, tt.opts)
			writeHostFile(t, filepath.Join(dir, "f"), "x")
			mustLookup(t, src, fuseproto.RootID, "f")
			st, err := src.ExportState(ExportOptions{Mode: migrate.FindPaths}, tt.sess)
			if err != nil {
				t.Fatal(err)
			}
			o := tt.opts
			o.SharedDir = dir
			dst, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			_, err = dst.ImportState(st, ImportOptions{OnError: migrate.Abort})
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("an honest session was refused: %v", err)
			case tt.want == "":
				return
			case err == nil || !strings.Contains(err.Error(), tt.want):
				t.Fatalf("ImportState: %v, want an error about %q", err, tt.want)
			}
			if n := dst.store.Len(); n != 1 || dst.secLabel.Load() || dst.posixACL.Load() || dst.writeback.Load() {
				t.Errorf("a refused session was applied: %d inodes, labels %v, ACLs %v, writeback %v",
					n, dst.secLabel.Load(), dst.posixACL.Load(), dst.writeback.Load())
			}
		})
	}
}

// TestImportRefusesHandleFlags: a handle is opened again with the flags
// the state gives, so flags no honest source records refuse the state
// before anything is opened: O_TMPFILE on a directory would make a
// writable file in it (on a read-only destination too), O_PATH is no open
// file, a directory is never open for writing, nothing is open for writing
// on a read-only file system.
func TestImportRefusesHandleFlags(t *testing.T) {
	tests := []struct {
		name     string
		readonly bool
		dir      bool
		flags    int32
	}{
		{"O_TMPFILE in a directory, read-only", true, true, unix.O_TMPFILE | unix.O_RDWR},
		{"O_TMPFILE in a directory", false, true, unix.O_TMPFILE | unix.O_RDWR},
		{"O_TMPFILE on a file, read-only", true, false, unix.O_TMPFILE | unix.O_RDWR},
		{"write access, read-only", true, false, unix.O_WRONLY},
		{"truncation, read-only", true, false, unix.O_RDONLY | unix.O_TRUNC},
		{"a directory for writing", false, true, unix.O_RDWR | unix.O_DIRECTORY},
		{"O_PATH", false, false, unix.O_PATH},
		{"access mode 3", false, false, unix.O_ACCMODE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dir := newFS(t, Options{Readonly: tt.readonly})
			os.Mkdir(filepath.Join(dir, "d"), 0o755)
			writeHostFile(t, filepath.Join(dir, "f"), "x")
			node := mustLookup(t, src, fuseproto.RootID, "f")
			if tt.dir {
				node = mustLookup(t, src, fuseproto.RootID, "d")
			}
			st := exportFor(t, src, ExportOptions{Mode: migrate.FindPaths})
			st.Handles = append(st.Handles, migrate.Handle{ID: st.NextHandle, Node: uint64(node), Flags: tt.flags, GuestFlags: uint32(tt.flags)})
			st.NextHandle++
			if err := st.Validate(); err != nil {
				t.Fatalf("the forged state does not pass validation, so this test shows nothing: %v", err)
			}
			for _, onError := range []migrate.OnError{migrate.Abort, migrate.GuestError} {
				dst, err := New(Options{SharedDir: dir, Readonly: tt.readonly})
				if err != nil {
					t.Fatal(err)
				}
				_, err = dst.ImportState(st, ImportOptions{OnError: onError})
				if err == nil || !strings.Contains(err.Error(), "handle "+strconv.FormatUint(st.NextHandle-1, 10)) {
					t.Errorf("%s: ImportState: %v, want the handle named", onError, err)
				}
				if n, h := dst.store.Len(), dst.store.HandleCount(); n != 1 || h != 0 {
					t.Errorf("%s: a refused state left %d inodes and %d handles", onError, n, h)
				}
				dst.Close()
			}
			for _, d := range []string{dir, filepath.Join(dir, "d")} {
				entries, err := os.ReadDir(d)
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) != map[bool]int{true: 2, false: 0}[d == dir] {
					t.Errorf("%s holds %d entries after the import: something was made", d, len(entries))
				}
			}
		})
	}
}

// TestImportTmpfileHandle: an O_TMPFILE file the guest made and holds
// open migrates: its handle is opened again as the regular file it is.
func TestImportTmpfileHandle(t *testing.T) {
	forEachMigrationMode(t, Options{}, func(t *testing.T, mode migrate.Mode, src *FS, dir string) {
		var out fuse.CreateOut
		if errno := src.Tmpfile(req(fuseproto.RootID), &fuse.CreateIn{Flags: unix.O_TMPFILE | unix.O_RDWR, Mode: 0o600}, &out); errno != 0 {
			t.Skipf("O_TMPFILE: %v", errno)
		}
		node, fh := fuseproto.NodeID(out.NodeId), out.Fh
		if _, errno := src.Write(req(node), &fuse.WriteIn{Fh: fh, Size: 5}, [][]byte{[]byte("tmpfi")}); errno != 0 {
			t.Fatal(errno)
		}
		st := exportFor(t, src, ExportOptions{Mode: mode})
		dst := newDest(t, src, dir)
		if _, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort}); err != nil {
			t.Fatalf("ImportState: %v", err)
		}
		if data, errno := read(t, dst, node, fh, 64); errno != 0 || string(data) != "tmpfi" {
			t.Fatalf("read through the migrated O_TMPFILE handle: %q, %v", data, errno)
		}
		if _, errno := dst.Write(req(node), &fuse.WriteIn{Fh: fh, Offset: 5, Size: 1}, [][]byte{[]byte("!")}); errno != 0 {
			t.Fatalf("write through the migrated O_TMPFILE handle: %v", errno)
		}
		release(dst, node, fh)
		release(src, node, fh)
	})
}
