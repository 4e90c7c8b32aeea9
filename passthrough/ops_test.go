package passthrough

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
)

func create(t *testing.T, fs *FS, parent fuseproto.NodeID, name string, flags uint32, mode uint32) (fuseproto.NodeID, uint64) {
	t.Helper()
	var out fuse.CreateOut
	if errno := fs.Create(req(parent), &fuse.CreateIn{Flags: flags, Mode: mode}, name, &out); errno != 0 {
		t.Fatalf("create %s: %v", name, errno)
	}
	return fuseproto.NodeID(out.NodeId), out.Fh
}

func write(t *testing.T, fs *FS, node fuseproto.NodeID, fh uint64, off uint64, data string) {
	t.Helper()
	n, errno := fs.Write(req(node), &fuse.WriteIn{Fh: fh, Offset: off, Size: uint32(len(data))}, [][]byte{[]byte(data)})
	if errno != 0 || int(n) != len(data) {
		t.Fatalf("write: %d, %v", n, errno)
	}
}

func TestCreateWriteRead(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		node, fh := create(t, fs, fuseproto.RootID, "f", unix.O_RDWR, unix.S_IFREG|0o640)
		write(t, fs, node, fh, 0, "hello, ")
		// Scattered buffers, as a virtqueue gives them.
		n, errno := fs.Write(req(node), &fuse.WriteIn{Fh: fh, Offset: 7, Size: 5}, [][]byte{[]byte("wo"), []byte("rld")})
		if errno != 0 || n != 5 {
			t.Fatalf("scattered write: %d, %v", n, errno)
		}
		a, b := make([]byte, 3), make([]byte, 100)
		got, errno := fs.Read(req(node), &fuse.ReadIn{Fh: fh, Size: 103}, [][]byte{a, b})
		if errno != 0 || string(a)+string(b[:got-3]) != "hello, world" {
			t.Fatalf("read back %q%q (%d, %v)", a, b[:max(0, got-3)], got, errno)
		}
		release(fs, node, fh)
		if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "hello, world" {
			t.Fatalf("host file holds %q", b)
		}
		st, _ := os.Stat(filepath.Join(dir, "f"))
		if st.Mode().Perm() != 0o640 {
			t.Fatalf("mode %o, want 640 (the daemon's umask must not apply)", st.Mode().Perm())
		}
		// A handle is only good for its own node.
		if _, errno := read(t, fs, fuseproto.RootID, fh, 1); errno != syscall.EBADF {
			t.Fatalf("read through a released handle: %v", errno)
		}
	})
}

func TestAppendWritesLandAtEnd(t *testing.T) {
	fs, dir := newFS(t, Options{})
	writeHostFile(t, filepath.Join(dir, "log"), "0123")
	node := mustLookup(t, fs, fuseproto.RootID, "log")
	fh, errno := open(t, fs, node, unix.O_WRONLY|unix.O_APPEND)
	if errno != 0 {
		t.Fatal(errno)
	}
	// The host file grows behind the guest's back; an O_APPEND write with a
	// stale offset still goes to the end.
	writeHostFile(t, filepath.Join(dir, "log"), "0123456789")
	write(t, fs, node, fh, 4, "X")
	if b, _ := os.ReadFile(filepath.Join(dir, "log")); string(b) != "0123456789X" {
		t.Fatalf("got %q", b)
	}
}

func TestSetAttr(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		writeHostFile(t, filepath.Join(dir, "f"), "0123456789")
		node := mustLookup(t, fs, fuseproto.RootID, "f")
		cases := []struct {
			name  string
			in    fuse.SetAttrInCommon
			check func(st *unix.Stat_t) bool
		}{
			{"chmod", fuse.SetAttrInCommon{Valid: fuse.FATTR_MODE, Mode: 0o600},
				func(st *unix.Stat_t) bool { return st.Mode&0o7777 == 0o600 }},
			{"chown", fuse.SetAttrInCommon{Valid: fuse.FATTR_UID | fuse.FATTR_GID, Owner: fuse.Owner{Uid: 1000, Gid: 1001}},
				func(st *unix.Stat_t) bool { return st.Uid == 1000 && st.Gid == 1001 }},
			{"chgrp only", fuse.SetAttrInCommon{Valid: fuse.FATTR_GID, Owner: fuse.Owner{Gid: 1002}},
				func(st *unix.Stat_t) bool { return st.Uid == 1000 && st.Gid == 1002 }},
			{"shrink", fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE, Size: 4},
				func(st *unix.Stat_t) bool { return st.Size == 4 }},
			{"grow", fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE, Size: 1 << 20},
				func(st *unix.Stat_t) bool { return st.Size == 1<<20 }},
			{"times", fuse.SetAttrInCommon{Valid: fuse.FATTR_ATIME | fuse.FATTR_MTIME, Atime: 1000, Mtime: 2000, Mtimensec: 5},
				func(st *unix.Stat_t) bool { return st.Atim.Sec == 1000 && st.Mtim.Sec == 2000 && st.Mtim.Nsec == 5 }},
			{"mtime now", fuse.SetAttrInCommon{Valid: fuse.FATTR_MTIME | fuse.FATTR_MTIME_NOW},
				func(st *unix.Stat_t) bool { return st.Mtim.Sec > 2000 && st.Atim.Sec == 1000 }},
		}
		for _, c := range cases {
			var out fuse.AttrOut
			if errno := fs.SetAttr(req(node), &fuse.SetAttrIn{SetAttrInCommon: c.in}, &out); errno != 0 {
				t.Fatalf("%s: %v", c.name, errno)
			}
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(dir, "f"), &st); err != nil {
				t.Fatal(err)
			}
			if !c.check(&st) {
				t.Errorf("%s: host file is %+v", c.name, st)
			}
			if uint64(out.Size) != uint64(st.Size) || out.Mode != st.Mode {
				t.Errorf("%s: reply attrs size %d mode %o, host %d %o", c.name, out.Size, out.Mode, st.Size, st.Mode)
			}
		}
		// Truncate through a handle.
		fh, errno := open(t, fs, node, unix.O_RDWR)
		if errno != 0 {
			t.Fatal(errno)
		}
		var out fuse.AttrOut
		in := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE | fuse.FATTR_FH, Size: 7, Fh: fh}}
		if errno := fs.SetAttr(req(node), &in, &out); errno != 0 || out.Size != 7 {
			t.Fatalf("ftruncate: %v, size %d", errno, out.Size)
		}
	})
}

func TestRenameFlags(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		writeHostFile(t, filepath.Join(dir, "a"), "A")
		writeHostFile(t, filepath.Join(dir, "b"), "B")
		root := req(fuseproto.RootID)
		in := func(flags uint32) *fuse.RenameIn {
			return &fuse.RenameIn{Newdir: uint64(fuseproto.RootID), Flags: flags}
		}
		if errno := fs.Rename(root, in(unix.RENAME_NOREPLACE), "a", "b"); errno != syscall.EEXIST {
			t.Fatalf("NOREPLACE onto an existing name: %v", errno)
		}
		if errno := fs.Rename(root, in(unix.RENAME_EXCHANGE), "a", "b"); errno != 0 {
			t.Fatal(errno)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "a")); string(b) != "B" {
			t.Fatalf("EXCHANGE: a holds %q", b)
		}
		if errno := fs.Rename(root, in(unix.RENAME_WHITEOUT), "a", "c"); errno != 0 {
			t.Fatal(errno)
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, "a"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Fatalf("WHITEOUT left %+v, %v; want a 0:0 char device", st, err)
		}
		if errno := fs.Rename(root, in(1<<20), "b", "d"); errno != syscall.EINVAL {
			t.Fatalf("unknown flag: %v", errno)
		}
		if errno := fs.Rename(root, in(0), "b", "c"); errno != 0 {
			t.Fatalf("plain rename over an existing file: %v", errno)
		}
	})
}

func TestLinkAndTmpfile(t *testing.T) {
	forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
		writeHostFile(t, filepath.Join(dir, "f"), "data")
		node := mustLookup(t, fs, fuseproto.RootID, "f")
		var e fuse.EntryOut
		if errno := fs.Link(req(fuseproto.RootID), &fuse.LinkIn{Oldnodeid: uint64(node)}, "g", &e); errno != 0 {
			t.Fatal(errno)
		}
		if fuseproto.NodeID(e.NodeId) != node || e.Attr.Nlink != 2 {
			t.Fatalf("link: node %d nlink %d, want node %d nlink 2", e.NodeId, e.Attr.Nlink, node)
		}
		var co fuse.CreateOut
		if errno := fs.Tmpfile(req(fuseproto.RootID), &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o600}, &co); errno != 0 {
			t.Fatal(errno)
		}
		tmp := fuseproto.NodeID(co.NodeId)
		write(t, fs, tmp, co.Fh, 0, "tmp")
		if co.Attr.Nlink != 0 {
			t.Fatalf("tmpfile nlink %d", co.Attr.Nlink)
		}
		if errno := fs.Link(req(fuseproto.RootID), &fuse.LinkIn{Oldnodeid: uint64(tmp)}, "named", &e); errno != 0 {
			t.Fatalf("giving a tmpfile a name: %v", errno)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "named")); string(b) != "tmp" {
			t.Fatalf("named tmpfile holds %q", b)
		}
	})
}

func TestFileRangeOps(t *testing.T) {
	fs, dir := newFS(t, Options{})
	node, fh := create(t, fs, fuseproto.RootID, "sparse", unix.O_RDWR, 0o644)
	write(t, fs, node, fh, 1<<20, "end")
	var lo fuse.LseekOut
	if errno := fs.Lseek(req(node), &fuse.LseekIn{Fh: fh, Offset: 0, Whence: unix.SEEK_DATA}, &lo); errno != 0 || lo.Offset == 0 {
		t.Fatalf("SEEK_DATA: %d, %v", lo.Offset, errno)
	}
	if errno := fs.Lseek(req(node), &fuse.LseekIn{Fh: fh, Offset: 0, Whence: unix.SEEK_HOLE}, &lo); errno != 0 || lo.Offset != 0 {
		t.Fatalf("SEEK_HOLE: %d, %v", lo.Offset, errno)
	}
	if errno := fs.Lseek(req(node), &fuse.LseekIn{Fh: fh, Offset: 2 << 20, Whence: unix.SEEK_DATA}, &lo); errno != syscall.ENXIO {
		t.Fatalf("SEEK_DATA past the end: %v", errno)
	}
	if errno := fs.Fallocate(req(node), &fuse.FallocateIn{Fh: fh, Offset: 0, Length: 4096}); errno != 0 {
		t.Fatal(errno)
	}
	if errno := fs.Fallocate(req(node), &fuse.FallocateIn{Fh: fh, Offset: 1 << 20, Length: 3,
		Mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE}); errno != 0 {
		t.Fatal(errno)
	}
	if data, _ := read(t, fs, node, fh, 10); len(data) != 10 || !bytes.Equal(data, make([]byte, 10)) {
		t.Fatalf("read of the allocated range: %q", data)
	}
	dst, dfh := create(t, fs, fuseproto.RootID, "copy", unix.O_RDWR, 0o644)
	write(t, fs, node, fh, 0, "copy me")
	n, errno := fs.CopyFileRange(req(node), &fuse.CopyFileRangeIn{FhIn: fh, NodeIdOut: uint64(dst), FhOut: dfh, Len: 7})
	if errno != 0 || n != 7 {
		t.Fatalf("copy_file_range: %d, %v", n, errno)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "copy")); string(b) != "copy me" {
		t.Fatalf("copy holds %q", b)
	}
	if errno := fs.Fsync(req(node), &fuse.FsyncIn{Fh: fh, FsyncFlags: 1}); errno != 0 {
		t.Fatal(errno)
	}
	if errno := fs.Flush(req(node), &fuse.FlushIn{Fh: fh}); errno != 0 {
		t.Fatal(errno)
	}
	var so fuse.StatfsOut
	if errno := fs.StatFs(req(node), &so); errno != 0 || so.Bsize == 0 || so.NameLen == 0 {
		t.Fatalf("statfs: %+v, %v", so, errno)
	}
	if errno := fs.SyncFS(req(fuseproto.RootID)); errno != 0 {
		t.Fatal(errno)
	}
}

func TestXattr(t *testing.T) {
	forEachMode(t, Options{Xattr: true}, func(t *testing.T, fs *FS, dir string) {
		writeHostFile(t, filepath.Join(dir, "f"), "")
		node := mustLookup(t, fs, fuseproto.RootID, "f")
		r := req(node)
		if errno := fs.SetXAttr(r, &fuse.SetXAttrIn{}, "user.k", []byte("value")); errno != 0 {
			t.Fatal(errno)
		}
		if n, errno := fs.GetXAttr(r, "user.k", nil); errno != 0 || n != 5 {
			t.Fatalf("size query: %d, %v", n, errno)
		}
		buf := make([]byte, 64)
		if n, errno := fs.GetXAttr(r, "user.k", buf); errno != 0 || string(buf[:n]) != "value" {
			t.Fatalf("get: %q, %v", buf[:n], errno)
		}
		if _, errno := fs.GetXAttr(r, "user.k", make([]byte, 2)); errno != syscall.ERANGE {
			t.Fatalf("small buffer: %v", errno)
		}
		if n, errno := fs.ListXAttr(r, buf); errno != 0 || !bytes.Contains(buf[:n], []byte("user.k\x00")) {
			t.Fatalf("list: %q, %v", buf[:n], errno)
		}
		if errno := fs.SetXAttr(r, &fuse.SetXAttrIn{Flags: unix.XATTR_CREATE}, "user.k", []byte("x")); errno != syscall.EEXIST {
			t.Fatalf("XATTR_CREATE on existing: %v", errno)
		}
		if errno := fs.RemoveXAttr(r, "user.k"); errno != 0 {
			t.Fatal(errno)
		}
		if _, errno := fs.GetXAttr(r, "user.k", buf); errno != syscall.ENODATA {
			t.Fatalf("get removed: %v", errno)
		}
		// A symlink's own attributes, not its target's.
		if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
			t.Fatal(err)
		}
		fs.SetXAttr(r, &fuse.SetXAttrIn{}, "user.target", []byte("t"))
		l := mustLookup(t, fs, fuseproto.RootID, "l")
		if n, errno := fs.ListXAttr(req(l), buf); errno == 0 && bytes.Contains(buf[:n], []byte("user.target")) {
			t.Fatal("listxattr of a symlink followed it")
		}
	})
	fs, _ := newFS(t, Options{})
	if _, errno := fs.GetXAttr(req(fuseproto.RootID), "user.k", nil); errno != syscall.ENOSYS {
		t.Fatalf("xattr without --xattr: %v, want ENOSYS", errno)
	}
}

func TestReadonly(t *testing.T) {
	fs, dir := newFS(t, Options{Readonly: true, Xattr: true})
	writeHostFile(t, filepath.Join(dir, "f"), "ro")
	node := mustLookup(t, fs, fuseproto.RootID, "f")
	root := req(fuseproto.RootID)
	var e fuse.EntryOut
	for name, errno := range map[string]syscall.Errno{
		"mkdir":       fs.Mkdir(root, &fuse.MkdirIn{Mode: 0o755}, "d", &e),
		"mknod":       fs.Mknod(root, &fuse.MknodIn{Mode: unix.S_IFREG}, "n", &e),
		"symlink":     fs.Symlink(root, fuseproto.RootID, "s", "f", &e),
		"create":      fs.Create(root, &fuse.CreateIn{Flags: unix.O_RDWR}, "c", &fuse.CreateOut{}),
		"unlink":      fs.Unlink(root, fuseproto.RootID, "f"),
		"rename":      fs.Rename(root, &fuse.RenameIn{Newdir: 1}, "f", "g"),
		"link":        fs.Link(root, &fuse.LinkIn{Oldnodeid: uint64(node)}, "h", &e),
		"setattr":     fs.SetAttr(req(node), &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_MODE}}, &fuse.AttrOut{}),
		"openrw":      func() syscall.Errno { _, errno := open(t, fs, node, unix.O_RDWR); return errno }(),
		"trunc":       func() syscall.Errno { _, errno := open(t, fs, node, unix.O_RDONLY|unix.O_TRUNC); return errno }(),
		"setxattr":    fs.SetXAttr(req(node), &fuse.SetXAttrIn{}, "user.a", nil),
		"removexattr": fs.RemoveXAttr(req(node), "user.a"),
		"tmpfile":     fs.Tmpfile(root, &fuse.CreateIn{Flags: unix.O_RDWR}, &fuse.CreateOut{}),
	} {
		if errno != syscall.EROFS {
			t.Errorf("%s on a read-only share: %v, want EROFS", name, errno)
		}
	}
	fh, errno := open(t, fs, node, unix.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	if data, _ := read(t, fs, node, fh, 10); string(data) != "ro" {
		t.Fatalf("read on a read-only share: %q", data)
	}
}

func TestGuestFDBudget(t *testing.T) {
	fs, dir := newFS(t, Options{MaxGuestFDs: 3, InodeFileHandles: inodestore.FileHandlesNever})
	for _, n := range []string{"a", "b", "c"} {
		writeHostFile(t, filepath.Join(dir, n), n)
	}
	a := mustLookup(t, fs, fuseproto.RootID, "a")
	mustLookup(t, fs, fuseproto.RootID, "b")
	fh, errno := open(t, fs, a, unix.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	if _, _, errno := lookup(t, fs, fuseproto.RootID, "c"); errno != syscall.EMFILE {
		t.Fatalf("lookup past the budget: %v, want EMFILE", errno)
	}
	if _, errno := open(t, fs, a, unix.O_RDONLY); errno != syscall.EMFILE {
		t.Fatalf("open past the budget: %v, want EMFILE", errno)
	}
	// The daemon keeps serving what it has; freeing a descriptor lets the
	// guest go on.
	if data, _ := read(t, fs, a, fh, 1); string(data) != "a" {
		t.Fatalf("read: %q", data)
	}
	release(fs, a, fh)
	mustLookup(t, fs, fuseproto.RootID, "c")
}

func TestUnknownNodesAndHandles(t *testing.T) {
	fs, _ := newFS(t, Options{})
	if _, _, errno := lookup(t, fs, 999, "x"); errno != syscall.EBADF {
		t.Fatalf("lookup in unknown node: %v", errno)
	}
	if _, errno := read(t, fs, fuseproto.RootID, 42, 10); errno != syscall.EBADF {
		t.Fatalf("read of unknown handle: %v", errno)
	}
	fs.Forget(999, 1)
	fs.Release(req(1), &fuse.ReleaseIn{Fh: 77})
	var ao fuse.AttrOut
	if errno := fs.GetAttr(req(fuseproto.RootID), &fuse.GetAttrIn{}, &ao); errno != 0 || ao.Mode&unix.S_IFDIR == 0 {
		t.Fatalf("root getattr after bad requests: %v", errno)
	}
}

func TestInitCapabilities(t *testing.T) {
	const all = ^uint64(0)
	cases := []struct {
		name     string
		opts     Options
		kernel   uint64
		want     uint64
		dontWant uint64
	}{
		{"defaults", Options{}, all, fuse.CAP_READDIRPLUS | fuse.CAP_EXPORT_SUPPORT,
			fuse.CAP_WRITEBACK_CACHE | fuse.CAP_HANDLE_KILLPRIV_V2 | fuse.CAP_DIRECT_IO_ALLOW_MMAP},
		{"no readdirplus", Options{NoReaddirplus: true}, all, 0, fuse.CAP_READDIRPLUS | fuse.CAP_READDIRPLUS_AUTO},
		{"writeback", Options{Writeback: true}, all, fuse.CAP_WRITEBACK_CACHE, 0},
		{"writeback not offered", Options{Writeback: true}, all &^ fuse.CAP_WRITEBACK_CACHE, 0, fuse.CAP_WRITEBACK_CACHE},
		{"killpriv v2", Options{KillprivV2: true}, all, fuse.CAP_HANDLE_KILLPRIV_V2, 0},
		{"allow mmap", Options{AllowMmap: true}, all, fuse.CAP_DIRECT_IO_ALLOW_MMAP, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.SharedDir = t.TempDir()
			fs, err := New(c.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			var out fuse.InitOut
			got, errno := fs.Init(c.kernel, &out)
			if errno != 0 {
				t.Fatal(errno)
			}
			if got&c.want != c.want || got&c.dontWant != 0 {
				t.Fatalf("flags %#x: want %#x set and %#x clear", got, c.want, c.dontWant)
			}
		})
	}
}

// A directory that is a mount point on the host is announced as a submount,
// so the guest gives it its own superblock; other entries are not.
func TestAnnounceSubmounts(t *testing.T) {
	for _, announce := range []bool{false, true} {
		fs, dir := newFS(t, Options{AnnounceSubmounts: announce})
		for _, d := range []string{"mnt", "plain"} {
			if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := unix.Mount("tmpfs", filepath.Join(dir, "mnt"), "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("mount tmpfs (the test needs root): %v", err)
		}
		t.Cleanup(func() { unix.Unmount(filepath.Join(dir, "mnt"), unix.MNT_DETACH) })
		_, attr, errno := lookup(t, fs, fuseproto.RootID, "mnt")
		if errno != 0 {
			t.Fatal(errno)
		}
		if got := attr.Flags&fuse.ATTR_SUBMOUNT != 0; got != announce {
			t.Errorf("announce=%v: mount point flagged %v", announce, got)
		}
		if _, attr, _ := lookup(t, fs, fuseproto.RootID, "plain"); attr.Flags&fuse.ATTR_SUBMOUNT != 0 {
			t.Errorf("announce=%v: plain directory flagged as a submount", announce)
		}
		mnt := mustLookup(t, fs, fuseproto.RootID, "mnt")
		if _, attr, _ := lookup(t, fs, mnt, ".."); attr.Flags&fuse.ATTR_SUBMOUNT != 0 {
			t.Errorf("announce=%v: .. of a submount flagged", announce)
		}
	}
}

// A READ or WRITE scattered over more buffers than one system call takes
// (IOV_MAX) still moves every byte.
func TestManyBuffers(t *testing.T) {
	fs, _ := newFS(t, Options{})
	node, fh := create(t, fs, fuseproto.RootID, "f", unix.O_RDWR, 0o644)
	const nbufs = 3*iovMax + 7
	src := make([][]byte, nbufs)
	for i := range src {
		src[i] = []byte{byte(i), byte(i >> 8)}
	}
	n, errno := fs.Write(req(node), &fuse.WriteIn{Fh: fh, Size: 2 * nbufs}, src)
	if errno != 0 || n != 2*nbufs {
		t.Fatalf("write over %d buffers: %d, %v", nbufs, n, errno)
	}
	dst := make([][]byte, 2*nbufs)
	for i := range dst {
		dst[i] = make([]byte, 1)
	}
	got, errno := fs.Read(req(node), &fuse.ReadIn{Fh: fh, Size: 2 * nbufs}, dst)
	if errno != 0 || got != 2*nbufs {
		t.Fatalf("read into %d buffers: %d, %v", len(dst), got, errno)
	}
	for i := 0; i < nbufs; i++ {
		if dst[2*i][0] != byte(i) || dst[2*i+1][0] != byte(i>>8) {
			t.Fatalf("byte pair %d read back as %d %d", i, dst[2*i][0], dst[2*i+1][0])
		}
	}
	// Past the end of the file the read is short, not an error.
	got, errno = fs.Read(req(node), &fuse.ReadIn{Fh: fh, Offset: 2*nbufs - 1, Size: 2 * nbufs}, dst)
	if errno != 0 || got != 1 {
		t.Fatalf("read at the end: %d, %v", got, errno)
	}
}
