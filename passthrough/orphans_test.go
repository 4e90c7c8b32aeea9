package passthrough

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/migrate"
)

// orphanNames lists the names in the shared directory's OrphanDir.
func orphanNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, OrphanDir))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func wantOrphans(t *testing.T, dir string, n int) []string {
	t.Helper()
	names := orphanNames(t, dir)
	if len(names) != n {
		t.Fatalf("%s holds %v, want %d files", OrphanDir, names, n)
	}
	return names
}

func nlinkOf(t *testing.T, fs *FS, node fuseproto.NodeID) uint32 {
	t.Helper()
	var out fuse.AttrOut
	if errno := fs.GetAttr(req(node), &fuse.GetAttrIn{}, &out); errno != 0 {
		t.Fatalf("getattr %d: %v", node, errno)
	}
	return out.Nlink
}

// TestUnlinkOpenKeepsOrphan: a file the guest removes while it holds it
// open (by UNLINK or by a RENAME over it) keeps a name in OrphanDir until
// the guest's last handle of it is released; the guest sees nlink 0 and
// reads and writes on. Files not open, hard-linked ones and the removal of
// a directory are untouched.
func TestUnlinkOpenKeepsOrphan(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		root := fuseproto.RootID
		node, fh := create(t, fs, root, "held", unix.O_RDWR, 0o644)
		write(t, fs, node, fh, 0, "before")
		var oo fuse.OpenOut
		if errno := fs.Open(req(node), &fuse.OpenIn{Flags: unix.O_RDONLY}, &oo); errno != 0 {
			t.Fatal(errno)
		}
		if errno := fs.Unlink(req(root), root, "held"); errno != 0 {
			t.Fatalf("unlink: %v", errno)
		}
		mustNotExist(t, filepath.Join(dir, "held"))
		wantOrphans(t, dir, 1)
		if n := nlinkOf(t, fs, node); n != 0 {
			t.Errorf("guest sees nlink %d for an unlinked file, want 0", n)
		}
		write(t, fs, node, fh, 6, " after")
		if b, errno := read(t, fs, node, oo.Fh, 64); errno != 0 || string(b) != "before after" {
			t.Fatalf("read through the other handle: %q, %v", b, errno)
		}
		release(fs, node, fh)
		wantOrphans(t, dir, 1) // one handle still open
		release(fs, node, oo.Fh)
		wantOrphans(t, dir, 0)

		// A rename over an open file keeps the file replaced.
		writeHostFile(t, filepath.Join(dir, "new"), "new")
		old, ofh := create(t, fs, root, "target", unix.O_RDWR, 0o644)
		write(t, fs, old, ofh, 0, "old")
		if errno := fs.Rename(req(root), &fuse.RenameIn{Newdir: uint64(root)}, "new", "target"); errno != 0 {
			t.Fatalf("rename over: %v", errno)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "target")); string(b) != "new" {
			t.Fatalf("target holds %q after the rename", b)
		}
		wantOrphans(t, dir, 1)
		if b, errno := read(t, fs, old, ofh, 64); errno != 0 || string(b) != "old" {
			t.Fatalf("read of the replaced file: %q, %v", b, errno)
		}
		release(fs, old, ofh)
		wantOrphans(t, dir, 0)

		// Not open, or with another link left: a plain removal.
		writeHostFile(t, filepath.Join(dir, "closed"), "x")
		mustLookup(t, fs, root, "closed")
		linked, lfh := create(t, fs, root, "linked", unix.O_RDWR, 0o644)
		if err := os.Link(filepath.Join(dir, "linked"), filepath.Join(dir, "other")); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"closed", "linked"} {
			if errno := fs.Unlink(req(root), root, name); errno != 0 {
				t.Fatalf("unlink %s: %v", name, errno)
			}
		}
		wantOrphans(t, dir, 0)
		if n := nlinkOf(t, fs, linked); n != 1 {
			t.Errorf("hard-linked file: nlink %d, want 1", n)
		}
		release(fs, linked, lfh)
		if errno := fs.Unlink(req(root), root, "missing"); errno != syscall.ENOENT {
			t.Errorf("unlink of a missing name: %v, want ENOENT", errno)
		}
	})
}

// TestOrphanDirHidden: the guest can neither see OrphanDir nor create,
// remove or rename anything by its name; the same name in a subdirectory
// is an ordinary name.
func TestOrphanDirHidden(t *testing.T) {
	fs, dir := newFS(t, Options{})
	root := fuseproto.RootID
	if err := os.Mkdir(filepath.Join(dir, OrphanDir), 0o700); err != nil {
		t.Fatal(err)
	}
	writeHostFile(t, filepath.Join(dir, OrphanDir, "x"), "")
	writeHostFile(t, filepath.Join(dir, "file"), "")
	if _, _, errno := lookup(t, fs, root, OrphanDir); errno != syscall.ENOENT {
		t.Errorf("lookup: %v, want ENOENT", errno)
	}
	for _, plus := range []bool{false, true} {
		for _, d := range listDir(t, fs, root, 4096, plus) {
			if d.name == OrphanDir {
				t.Errorf("readdir (plus %v) lists %s", plus, OrphanDir)
			}
		}
	}
	var e fuse.EntryOut
	var co fuse.CreateOut
	file := mustLookup(t, fs, root, "file")
	for op, errno := range map[string]syscall.Errno{
		"mkdir":   fs.Mkdir(req(root), &fuse.MkdirIn{Mode: 0o755}, OrphanDir, &e),
		"mknod":   fs.Mknod(req(root), &fuse.MknodIn{Mode: unix.S_IFREG | 0o644}, OrphanDir, &e),
		"symlink": fs.Symlink(req(root), root, OrphanDir, "file", &e),
		"create":  fs.Create(req(root), &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, OrphanDir, &co),
		"link":    fs.Link(req(root), &fuse.LinkIn{Oldnodeid: uint64(file)}, OrphanDir, &e),
		"rename":  fs.Rename(req(root), &fuse.RenameIn{Newdir: uint64(root)}, "file", OrphanDir),
	} {
		if errno != syscall.EPERM {
			t.Errorf("%s of %s: %v, want EPERM", op, OrphanDir, errno)
		}
	}
	for op, errno := range map[string]syscall.Errno{
		"rmdir":  fs.Rmdir(req(root), root, OrphanDir),
		"unlink": fs.Unlink(req(root), root, OrphanDir),
		"rename": fs.Rename(req(root), &fuse.RenameIn{Newdir: uint64(root)}, OrphanDir, "elsewhere"),
	} {
		if errno != syscall.ENOENT {
			t.Errorf("%s of %s: %v, want ENOENT", op, OrphanDir, errno)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, OrphanDir, "x")); err != nil {
		t.Fatalf("the hidden directory was touched: %v", err)
	}
	// Only the shared directory's own entry is hidden.
	if errno := fs.Mkdir(req(root), &fuse.MkdirIn{Mode: 0o755}, "sub", &e); errno != 0 {
		t.Fatal(errno)
	}
	if errno := fs.Mkdir(req(fuseproto.NodeID(e.NodeId)), &fuse.MkdirIn{Mode: 0o755}, OrphanDir, &e); errno != 0 {
		t.Errorf("mkdir %s in a subdirectory: %v", OrphanDir, errno)
	}
}

// TestTmpfileOrphan: an O_TMPFILE file is an orphan from the start, and
// stops being one when the guest links it into the tree.
func TestTmpfileOrphan(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		root := fuseproto.RootID
		var co fuse.CreateOut
		if errno := fs.Tmpfile(req(root), &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o600}, &co); errno != 0 {
			t.Fatal(errno)
		}
		tmp := fuseproto.NodeID(co.NodeId)
		wantOrphans(t, dir, 1)
		if n := nlinkOf(t, fs, tmp); n != 0 {
			t.Errorf("tmpfile nlink %d, want 0", n)
		}
		var e fuse.EntryOut
		if errno := fs.Link(req(root), &fuse.LinkIn{Oldnodeid: uint64(tmp)}, "named", &e); errno != 0 {
			t.Fatal(errno)
		}
		wantOrphans(t, dir, 0)
		if n := nlinkOf(t, fs, tmp); n != 1 {
			t.Errorf("linked tmpfile nlink %d, want 1", n)
		}
		release(fs, tmp, co.Fh)
		if _, err := os.Stat(filepath.Join(dir, "named")); err != nil {
			t.Fatalf("the linked tmpfile went with its last close: %v", err)
		}
	})
}

// TestOrphansAtUnmount: an unmount (DESTROY) removes the orphans, unless
// the state went to a migration destination, which may hold them.
func TestOrphansAtUnmount(t *testing.T) {
	for _, keep := range []bool{false, true} {
		fs, dir := newFS(t, Options{})
		node, _ := create(t, fs, fuseproto.RootID, "f", unix.O_RDWR, 0o644)
		if errno := fs.Unlink(req(fuseproto.RootID), fuseproto.RootID, "f"); errno != 0 {
			t.Fatal(errno)
		}
		_ = node
		wantOrphans(t, dir, 1)
		if keep {
			fs.KeepOrphans()
		}
		fs.Destroy()
		want := 0
		if keep {
			want = 1
		}
		wantOrphans(t, dir, want)
	}
}

// TestMigrateOrphan: an unlinked file the guest holds open migrates in both
// modes. The destination reads and writes it through the guest's handle,
// reports nlink 0, and removes the hidden name at the guest's last close.
// The source, which handed its state over, leaves the name alone.
func TestMigrateOrphan(t *testing.T) {
	forEachMigrationMode(t, Options{}, func(t *testing.T, mode migrate.Mode, src *FS, dir string) {
		root := fuseproto.RootID
		if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		d := mustLookup(t, src, root, "d")
		node, fh := create(t, src, d, "gone", unix.O_RDWR, 0o644)
		write(t, src, node, fh, 0, "kept")
		if errno := src.Unlink(req(d), d, "gone"); errno != 0 {
			t.Fatal(errno)
		}
		st := exportFor(t, src, ExportOptions{Mode: mode, VerifyHandles: mode == migrate.FindPaths})
		var mi *migrate.Inode
		for k := range st.Inodes {
			if st.Inodes[k].ID == uint64(node) {
				mi = &st.Inodes[k]
			}
		}
		if mi == nil || !mi.Unlinked || mi.Invalid != "" || !strings.HasPrefix(mi.Name, OrphanDir+"/") {
			t.Fatalf("exported inode %+v: want an unlinked one named in %s", mi, OrphanDir)
		}
		src.KeepOrphans()
		src.Destroy() // the source's guest is gone; the name must stay

		dst := newDest(t, src, dir)
		if _, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort}); err != nil {
			t.Fatalf("import: %v", err)
		}
		if b, errno := read(t, dst, node, fh, 64); errno != 0 || string(b) != "kept" {
			t.Fatalf("read on the destination: %q, %v", b, errno)
		}
		write(t, dst, node, fh, 4, "!")
		if n := nlinkOf(t, dst, node); n != 0 {
			t.Errorf("destination reports nlink %d, want 0", n)
		}
		wantOrphans(t, dir, 1)
		release(dst, node, fh)
		wantOrphans(t, dir, 0)
	})
}

// TestImportOrphanOutsideHiddenDir: a state may only name an unlinked file
// inside OrphanDir. Anything else would have the destination remove a file
// of the guest's at the last close: such an inode is refused, and the file
// it names is left alone.
func TestImportOrphanOutsideHiddenDir(t *testing.T) {
	src, dir := newFS(t, Options{})
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeHostFile(t, filepath.Join(dir, "d", "victim"), "precious")
	d := mustLookup(t, src, fuseproto.RootID, "d")
	node := mustLookup(t, src, d, "victim")
	fh, errno := open(t, src, node, unix.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	st := exportFor(t, src, ExportOptions{Mode: migrate.FindPaths})
	for k := range st.Inodes {
		if i := &st.Inodes[k]; i.ID == uint64(node) {
			i.Unlinked, i.Parent, i.Name = true, migrate.RootID, "d/victim"
		}
	}
	b, err := migrate.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = migrate.Unmarshal(b); err != nil {
		t.Fatalf("the state should be well-formed: %v", err)
	}
	dst := newDest(t, src, dir)
	if _, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort}); err == nil || !strings.Contains(err.Error(), OrphanDir) {
		t.Fatalf("import with abort: %v, want a refusal naming %s", err, OrphanDir)
	}
	dst = newDest(t, src, dir)
	if _, err := dst.ImportState(st, ImportOptions{OnError: migrate.GuestError}); err != nil {
		t.Fatal(err)
	}
	release(dst, node, fh)
	if b, err := os.ReadFile(filepath.Join(dir, "d", "victim")); err != nil || string(b) != "precious" {
		t.Fatalf("the named file: %q, %v", b, err)
	}
}
