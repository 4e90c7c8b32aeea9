package passthrough

import (
	"errors"
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
