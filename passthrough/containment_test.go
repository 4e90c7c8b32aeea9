package passthrough

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
)

func TestDotDotAtRootStaysAtRoot(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		for _, name := range []string{"..", "."} {
			id, _, errno := lookup(t, fs, fuseproto.RootID, name)
			if errno != 0 || id != fuseproto.RootID {
				t.Errorf("lookup %q at root = %d, %v; want the root", name, id, errno)
			}
		}
		// ".." of a subdirectory is its parent, the root.
		if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		sub := mustLookup(t, fs, fuseproto.RootID, "sub")
		if id := mustLookup(t, fs, sub, ".."); id != fuseproto.RootID {
			t.Errorf("lookup .. in sub = %d, want root", id)
		}
	})
}

// Names with a slash or dot-dot never reach the host, even when the
// request layer's check is bypassed.
func TestPathNamesRefused(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		out := outsideDir(t, dir)
		rel, err := filepath.Rel(dir, out)
		if err != nil {
			t.Fatal(err)
		}
		writeHostFile(t, filepath.Join(out, "secret"), "secret")
		evil := filepath.Join(rel, "secret") // "../outsideNNN/secret"
		var e fuse.EntryOut
		if errno := fs.Lookup(req(fuseproto.RootID), fuseproto.RootID, evil, &e); errno == 0 {
			t.Fatalf("lookup %q succeeded: node %d", evil, e.NodeId)
		}
		root := req(fuseproto.RootID)
		created := filepath.Join(rel, "created")
		for name, errno := range map[string]syscall.Errno{
			"mkdir":   fs.Mkdir(root, &fuse.MkdirIn{Mode: 0o755}, created, &e),
			"mknod":   fs.Mknod(root, &fuse.MknodIn{Mode: unix.S_IFREG | 0o644}, created, &e),
			"symlink": fs.Symlink(root, fuseproto.RootID, created, "x", &e),
			"create":  fs.Create(root, &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, created, &fuse.CreateOut{}),
			"unlink":  fs.Unlink(root, fuseproto.RootID, evil),
			"rmdir":   fs.Rmdir(root, fuseproto.RootID, rel),
			"mkdir..": fs.Mkdir(root, &fuse.MkdirIn{Mode: 0o755}, "..", &e),
		} {
			if errno == 0 {
				t.Errorf("%s with a path name succeeded", name)
			}
		}
		mustNotExist(t, filepath.Join(out, "created"))
		if _, err := os.Stat(filepath.Join(out, "secret")); err != nil {
			t.Fatalf("outside file damaged: %v", err)
		}
		writeHostFile(t, filepath.Join(dir, "inside"), "x")
		if errno := fs.Rename(root, &fuse.RenameIn{Newdir: uint64(fuseproto.RootID)}, "inside", filepath.Join(rel, "moved")); errno == 0 {
			t.Error("rename to a path outside succeeded")
		}
		mustNotExist(t, filepath.Join(out, "moved"))
	})
}

// A symlink to /etc in the shared directory is an inode of its own: the
// daemon never follows it, not in lookups, not in opens.
func TestSymlinkToEtcNotFollowed(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		if err := os.Symlink("/etc", filepath.Join(dir, "etc")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")); err != nil {
			t.Fatal(err)
		}
		id, attr, errno := lookup(t, fs, fuseproto.RootID, "etc")
		if errno != 0 {
			t.Fatal(errno)
		}
		if attr.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Fatalf("lookup of a symlink gave mode %o", attr.Mode)
		}
		if _, _, errno := lookup(t, fs, id, "passwd"); errno != syscall.ENOTDIR {
			t.Fatalf("lookup through a symlink = %v, want ENOTDIR", errno)
		}
		pw := mustLookup(t, fs, fuseproto.RootID, "passwd")
		if fh, errno := open(t, fs, pw, unix.O_RDONLY); errno == 0 {
			data, _ := read(t, fs, pw, fh, 4096)
			t.Fatalf("opened a symlink to /etc/passwd and read %q", data)
		}
		// CREATE on an existing symlink must not write through it.
		out := outsideDir(t, dir)
		target := filepath.Join(out, "target")
		writeHostFile(t, target, "untouched")
		if err := os.Symlink(target, filepath.Join(dir, "trap")); err != nil {
			t.Fatal(err)
		}
		var co fuse.CreateOut
		errno = fs.Create(req(fuseproto.RootID), &fuse.CreateIn{Flags: unix.O_WRONLY | unix.O_TRUNC, Mode: 0o644}, "trap", &co)
		if errno == 0 {
			t.Fatal("CREATE opened an existing symlink")
		}
		if b, _ := os.ReadFile(target); string(b) != "untouched" {
			t.Fatalf("file outside changed to %q", b)
		}
		// Setting times, modes and xattrs on the link touches the link.
		var ao fuse.AttrOut
		errno = fs.SetAttr(req(id), &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_MTIME, Mtime: 12345}}, &ao)
		if errno != 0 {
			t.Fatalf("utimes on a symlink: %v", errno)
		}
		var st unix.Stat_t
		if err := unix.Stat("/etc", &st); err != nil {
			t.Fatal(err)
		}
		if st.Mtim.Sec == 12345 {
			t.Fatal("utimes went through the symlink to /etc")
		}
	})
}

// The host swaps a directory the guest holds for a symlink to /etc: the
// guest keeps the directory it had, and the new name is a symlink.
func TestDirectorySwappedForSymlink(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		d := filepath.Join(dir, "d")
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dnode := mustLookup(t, fs, fuseproto.RootID, "d")
		if err := os.Rename(d, filepath.Join(dir, "d.old")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/etc", d); err != nil {
			t.Fatal(err)
		}
		if _, _, errno := lookup(t, fs, dnode, "passwd"); errno != syscall.ENOENT {
			t.Fatalf("lookup passwd in the swapped-out dir = %v, want ENOENT", errno)
		}
		if _, attr, _ := lookup(t, fs, fuseproto.RootID, "d"); attr.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Fatalf("d is now mode %o, want a symlink", attr.Mode)
		}
	})
}

// A directory the guest holds, moved out of the shared directory by the
// host, does not give the guest a way up into the host's tree.
func TestMovedOutDirectoryCannotClimb(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
			t.Fatal(err)
		}
		a := mustLookup(t, fs, fuseproto.RootID, "a")
		b := mustLookup(t, fs, a, "b")
		out := outsideDir(t, dir)
		if err := os.Rename(filepath.Join(dir, "a", "b"), filepath.Join(out, "b")); err != nil {
			t.Fatal(err)
		}
		if id, _, errno := lookup(t, fs, b, ".."); errno == 0 {
			t.Fatalf("lookup .. of a moved-out directory gave node %d", id)
		}
	})
}

// Under a host that keeps swapping a directory and a symlink to /etc, no
// read ever returns data from outside the shared directory.
func TestRenameRaceNeverEscapes(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		const marker = "inside-the-shared-directory"
		real := filepath.Join(dir, "real")
		if err := os.Mkdir(real, 0o755); err != nil {
			t.Fatal(err)
		}
		writeHostFile(t, filepath.Join(real, "passwd"), marker)
		if err := os.Symlink("/etc", filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(dir, "d")
		if err := os.Symlink("/etc", d); err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Atomically exchange "d" between the real directory and a
			// symlink to /etc.
			for !stop.Load() {
				unix.Renameat2(unix.AT_FDCWD, real, unix.AT_FDCWD, d, unix.RENAME_EXCHANGE)
			}
		}()
		deadline := time.Now().Add(2 * time.Second)
		var reads int
		for time.Now().Before(deadline) {
			dn, _, errno := lookup(t, fs, fuseproto.RootID, "d")
			if errno != 0 {
				continue
			}
			pn, _, errno := lookup(t, fs, dn, "passwd")
			if errno != 0 {
				fs.Forget(dn, 1)
				continue
			}
			if fh, errno := open(t, fs, pn, unix.O_RDONLY); errno == 0 {
				data, _ := read(t, fs, pn, fh, 4096)
				release(fs, pn, fh)
				if string(data) != marker {
					stop.Store(true)
					wg.Wait()
					t.Fatalf("read %q through a racing rename: escaped the shared directory", data)
				}
				reads++
			}
			fs.Forget(pn, 1)
			fs.Forget(dn, 1)
		}
		stop.Store(true)
		wg.Wait()
		t.Logf("%d reads through the race, all from inside", reads)
		if reads == 0 {
			t.Fatal("the race never let a read through; the test proved nothing")
		}
	})
}

// Device nodes and FIFOs are never opened: a FIFO would block the daemon,
// a device node would reach the host's device.
func TestSpecialFilesNeverOpened(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		var e fuse.EntryOut
		root := req(fuseproto.RootID)
		if errno := fs.Mknod(root, &fuse.MknodIn{Mode: unix.S_IFIFO | 0o666}, "fifo", &e); errno != 0 {
			t.Fatal(errno)
		}
		fifo := fuseproto.NodeID(e.NodeId)
		// /dev/null's numbers: 1:3, encoded as the kernel does.
		if errno := fs.Mknod(root, &fuse.MknodIn{Mode: unix.S_IFCHR | 0o666, Rdev: encodeDev(1, 3)}, "null", &e); errno != 0 {
			t.Fatal(errno)
		}
		if e.Attr.Rdev != encodeDev(1, 3) {
			t.Fatalf("rdev = %#x, want %#x", e.Attr.Rdev, encodeDev(1, 3))
		}
		dev := fuseproto.NodeID(e.NodeId)
		done := make(chan syscall.Errno, 2)
		go func() {
			_, errno := open(t, fs, fifo, unix.O_RDONLY)
			done <- errno
		}()
		go func() {
			_, errno := open(t, fs, dev, unix.O_RDWR)
			done <- errno
		}()
		for k := 0; k < 2; k++ {
			select {
			case errno := <-done:
				if errno == 0 {
					t.Fatal("a special file was opened")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("OPEN of a FIFO blocked the daemon")
			}
		}
	})
}
