package passthrough

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/migrate"
)

// These tests drive the filesystem through its FileSystem methods, the way
// the request layer does for a guest, so that what the kernel would filter
// out of a local mount (names with '/', lookups of "..") still reaches it.

var handleModes = []inodestore.FileHandleMode{inodestore.FileHandlesNever, inodestore.FileHandlesMandatory}

func newFS(t *testing.T, opts Options) (*FS, string) {
	t.Helper()
	dir := t.TempDir()
	opts.SharedDir = dir
	fs, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var out fuse.InitOut
	if _, errno := fs.Init(^uint64(0), &out); errno != 0 {
		t.Fatalf("Init: %v", errno)
	}
	t.Cleanup(func() { fs.Close() })
	return fs, dir
}

// forEachMode runs f once per inode reference mode.
func forEachMode(t *testing.T, opts Options, f func(t *testing.T, fs *FS, dir string)) {
	for _, mode := range handleModes {
		t.Run(mode.String(), func(t *testing.T) {
			o := opts
			o.InodeFileHandles = mode
			fs, dir := newFS(t, o)
			f(t, fs, dir)
		})
	}
}

func req(node fuseproto.NodeID) *fuseproto.Request {
	return &fuseproto.Request{Header: fuse.InHeader{NodeId: uint64(node)}}
}

func lookup(t *testing.T, fs *FS, parent fuseproto.NodeID, name string) (fuseproto.NodeID, fuse.Attr, syscall.Errno) {
	t.Helper()
	var out fuse.EntryOut
	errno := fs.Lookup(req(parent), parent, name, &out)
	return fuseproto.NodeID(out.NodeId), out.Attr, errno
}

func mustLookup(t *testing.T, fs *FS, parent fuseproto.NodeID, name string) fuseproto.NodeID {
	t.Helper()
	id, _, errno := lookup(t, fs, parent, name)
	if errno != 0 {
		t.Fatalf("lookup %q in %d: %v", name, parent, errno)
	}
	return id
}

func open(t *testing.T, fs *FS, node fuseproto.NodeID, flags uint32) (uint64, syscall.Errno) {
	t.Helper()
	var out fuse.OpenOut
	errno := fs.Open(req(node), &fuse.OpenIn{Flags: flags}, &out)
	return out.Fh, errno
}

func read(t *testing.T, fs *FS, node fuseproto.NodeID, fh uint64, size int) ([]byte, syscall.Errno) {
	t.Helper()
	buf := make([]byte, size)
	n, errno := fs.Read(req(node), &fuse.ReadIn{Fh: fh, Size: uint32(size)}, [][]byte{buf})
	return buf[:n], errno
}

func release(fs *FS, node fuseproto.NodeID, fh uint64) {
	fs.Release(req(node), &fuse.ReleaseIn{Fh: fh})
}

func writeHostFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("%s exists (err %v): something escaped", path, err)
	}
}

// outsideDir returns a directory beside the shared directory, outside it.
func outsideDir(t *testing.T, shared string) string {
	t.Helper()
	d, err := os.MkdirTemp(filepath.Dir(shared), "outside")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

var _ = unix.O_RDONLY

// forEachMigrationMode runs f once per migration mode (--migration-mode)
// within each inode reference mode (forEachMode). File-handles mode needs
// CAP_DAC_READ_SEARCH for open_by_handle_at, and skips without it.
func forEachMigrationMode(t *testing.T, opts Options, f func(t *testing.T, mode migrate.Mode, fs *FS, dir string)) {
	for _, mode := range []migrate.Mode{migrate.FindPaths, migrate.FileHandles} {
		t.Run(string(mode), func(t *testing.T) {
			forEachMode(t, opts, func(t *testing.T, fs *FS, dir string) {
				if mode == migrate.FileHandles && unix.Geteuid() != 0 {
					t.Skip("opening file handles needs CAP_DAC_READ_SEARCH")
				}
				f(t, mode, fs, dir)
			})
		})
	}
}
