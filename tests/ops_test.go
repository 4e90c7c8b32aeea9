package tests

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fileHandleModes are the --inode-file-handles settings the basic operation
// tests run under: with "never" the daemon holds an O_PATH fd per inode, with
// "mandatory" it finds inodes again through file handles.
var fileHandleModes = []struct {
	name  string
	flags []string
}{
	{"fh-never", []string{"--inode-file-handles=never"}},
	{"fh-mandatory", []string{"--inode-file-handles=mandatory"}},
}

// opCases are the per-operation tests. Each gets a fresh directory on a
// mount shared by all cases of one file-handle mode.
var opCases = []struct {
	name string
	fn   func(t *testing.T, d dirs)
}{
	{"CreateWriteRead", testCreateWriteRead},
	{"Append", testAppend},
	{"Truncate", testTruncate},
	{"Chmod", testChmod},
	{"Chown", testChown},
	{"Utimes", testUtimes},
	{"SymlinkReadlink", testSymlinkReadlink},
	{"MknodFIFO", testMknodFIFO},
	{"MkdirRmdir", testMkdirRmdir},
	{"Unlink", testUnlink},
	{"Rename", testRename},
	{"HardLink", testHardLink},
	{"Tmpfile", testTmpfile},
	{"Statfs", testStatfs},
	{"Fsync", testFsync},
	{"Fallocate", testFallocate},
	{"SeekDataHole", testSeekDataHole},
	{"CopyFileRange", testCopyFileRange},
	{"Syncfs", testSyncfs},
	{"LargeFile", testLargeFile},
	{"ParallelWriters", testParallelWriters},
}

// TestOps runs every operation test through a mount, once per file-handle mode.
func TestOps(t *testing.T) {
	requireMountEnv(t)
	for _, mode := range fileHandleModes {
		t.Run(mode.name, func(t *testing.T) {
			src, mnt := startMount(t, mode.flags...)
			for _, c := range opCases {
				t.Run(c.name, func(t *testing.T) {
					c.fn(t, subdir(t, mnt, src, c.name))
				})
			}
		})
	}
}

// testCreateWriteRead creates a file through the mount, writes it in
// pieces, and reads it back through the mount and on the host.
func testCreateWriteRead(t *testing.T, d dirs) {
	f, err := os.OpenFile(d.m("f"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("hello, ")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := f.Write([]byte("world\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := f.WriteAt([]byte("W"), 7); err != nil {
		t.Fatalf("pwrite: %v", err)
	}
	buf := make([]byte, 5)
	if n, err := f.ReadAt(buf, 7); err != nil || string(buf[:n]) != "World" {
		t.Errorf("pread at 7: got %q, %v; want %q, nil", buf[:n], err, "World")
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	want := []byte("hello, World\n")
	wantContent(t, d.m("f"), want)
	wantContent(t, d.h("f"), want)
	if st := mustLstat(t, d.m("f")); st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != int64(len(want)) {
		t.Errorf("stat through the mount: mode %o size %d, want a regular file of %d bytes", st.Mode, st.Size, len(want))
	}

	_, err = os.OpenFile(d.m("f"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	wantErrno(t, "O_CREAT|O_EXCL on an existing file", err, unix.EEXIST)
	_, err = os.Open(d.m("missing"))
	wantErrno(t, "open of a missing file", err, unix.ENOENT)
	_, err = os.Open(d.m("f/below-a-file"))
	wantErrno(t, "open below a regular file", err, unix.ENOTDIR)

	g, err := os.OpenFile(d.m("f"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatalf("open O_TRUNC: %v", err)
	}
	g.Close()
	wantContent(t, d.m("f"), nil)
	wantContent(t, d.h("f"), nil)
}

// testAppend checks that O_APPEND writes land at the end of the file.
func testAppend(t *testing.T, d dirs) {
	mustWrite(t, d.m("f"), []byte("abc"), 0o644)
	for _, s := range []string{"def", "ghi"} {
		f, err := os.OpenFile(d.m("f"), os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			t.Fatalf("open O_APPEND: %v", err)
		}
		// An O_APPEND write ignores the file offset.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			t.Fatalf("seek: %v", err)
		}
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatalf("append %q: %v", s, err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	wantContent(t, d.m("f"), []byte("abcdefghi"))
	wantContent(t, d.h("f"), []byte("abcdefghi"))
}

// testTruncate grows and shrinks files with ftruncate and truncate.
func testTruncate(t *testing.T, d dirs) {
	orig := []byte("0123456789")
	cases := []struct {
		name   string
		byPath bool
		size   int64
	}{
		{"ftruncate-shrink", false, 4},
		{"ftruncate-grow", false, 8192 + 3},
		{"ftruncate-zero", false, 0},
		{"path-shrink", true, 1},
		{"path-grow", true, 100000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mustWrite(t, d.m(c.name), orig, 0o644)
			if c.byPath {
				if err := unix.Truncate(d.m(c.name), c.size); err != nil {
					t.Fatalf("truncate(%d): %v", c.size, err)
				}
			} else {
				f, err := os.OpenFile(d.m(c.name), os.O_RDWR, 0)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				defer f.Close()
				if err := f.Truncate(c.size); err != nil {
					t.Fatalf("ftruncate(%d): %v", c.size, err)
				}
				if fi, err := f.Stat(); err != nil || fi.Size() != c.size {
					t.Errorf("fstat after ftruncate: got size %v (%v), want %d", fi.Size(), err, c.size)
				}
			}
			want := make([]byte, c.size)
			copy(want, orig)
			if st := mustLstat(t, d.m(c.name)); st.Size != c.size {
				t.Errorf("size through the mount: got %d, want %d", st.Size, c.size)
			}
			wantContent(t, d.m(c.name), want)
			wantContent(t, d.h(c.name), want)
		})
	}
}

// testChmod sets permission bits through the mount, by path and by fd.
func testChmod(t *testing.T, d dirs) {
	mustWrite(t, d.m("f"), nil, 0o644)
	if err := os.Mkdir(d.m("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mode uint32
		byFd bool
	}{
		{"f", 0o600, false},
		{"f", 0o751, false},
		{"f", 0o444, true},
		{"f", 0o4755, false},
		{"f", 0o2711, true},
		{"f", 0, false},
		{"dir", 0o1777, false},
		{"dir", 0o700, true},
	}
	for _, c := range cases {
		if c.byFd {
			fd, err := unix.Open(d.m(c.name), unix.O_RDONLY, 0)
			if err != nil {
				t.Fatalf("open %s: %v", c.name, err)
			}
			err = unix.Fchmod(fd, c.mode)
			unix.Close(fd)
			if err != nil {
				t.Errorf("fchmod(%s, %o): %v", c.name, c.mode, err)
				continue
			}
		} else if err := unix.Chmod(d.m(c.name), c.mode); err != nil {
			t.Errorf("chmod(%s, %o): %v", c.name, c.mode, err)
			continue
		}
		for side, p := range map[string]string{"mount": d.m(c.name), "host": d.h(c.name)} {
			if got := mustLstat(t, p).Mode &^ unix.S_IFMT; got != c.mode {
				t.Errorf("after chmod(%s, %o) (by fd: %v): %s side mode %o, want %o", c.name, c.mode, c.byFd, side, got, c.mode)
			}
		}
	}
}

// testChown changes owners through the mount and checks them on the host.
func testChown(t *testing.T, d dirs) {
	mustWrite(t, d.m("f"), nil, 0o644)
	if err := os.Symlink("f", d.m("link")); err != nil {
		t.Fatal(err)
	}
	check := func(name string, uid, gid uint32) {
		t.Helper()
		for side, p := range map[string]string{"mount": d.m(name), "host": d.h(name)} {
			st := mustLstat(t, p)
			if st.Uid != uid || st.Gid != gid {
				t.Errorf("%s on the %s side: owner %d:%d, want %d:%d", name, side, st.Uid, st.Gid, uid, gid)
			}
		}
	}
	if err := os.Lchown(d.m("f"), 1000, 1000); err != nil {
		t.Fatalf("chown f 1000:1000: %v", err)
	}
	check("f", 1000, 1000)
	if err := os.Lchown(d.m("f"), -1, 1001); err != nil {
		t.Fatalf("chown f -1:1001: %v", err)
	}
	check("f", 1000, 1001)
	f, err := os.Open(d.m("f"))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Chown(1002, -1)
	f.Close()
	if err != nil {
		t.Fatalf("fchown f 1002:-1: %v", err)
	}
	check("f", 1002, 1001)
	// lchown changes the symlink, not its target.
	if err := os.Lchown(d.m("link"), 1000, 1000); err != nil {
		t.Fatalf("lchown link 1000:1000: %v", err)
	}
	check("link", 1000, 1000)
	check("f", 1002, 1001)
}

// testUtimes sets explicit times, UTIME_OMIT and UTIME_NOW through the mount.
func testUtimes(t *testing.T, d dirs) {
	mustWrite(t, d.m("f"), []byte("x"), 0o644)
	if err := os.Symlink("f", d.m("link")); err != nil {
		t.Fatal(err)
	}
	check := func(name string, atime, mtime unix.Timespec) {
		t.Helper()
		for side, p := range map[string]string{"mount": d.m(name), "host": d.h(name)} {
			st := mustLstat(t, p)
			if st.Atim != atime || st.Mtim != mtime {
				t.Errorf("%s on the %s side: atime %v mtime %v, want %v %v", name, side, st.Atim, st.Mtim, atime, mtime)
			}
		}
	}
	at := unix.Timespec{Sec: 1000000000, Nsec: 123456789}
	mt := unix.Timespec{Sec: 1200000000, Nsec: 987654321}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, d.m("f"), []unix.Timespec{at, mt}, 0); err != nil {
		t.Fatalf("utimensat explicit: %v", err)
	}
	check("f", at, mt)

	at2 := unix.Timespec{Sec: 1100000000, Nsec: 5}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, d.m("f"), []unix.Timespec{at2, {Nsec: unix.UTIME_OMIT}}, 0); err != nil {
		t.Fatalf("utimensat with UTIME_OMIT mtime: %v", err)
	}
	check("f", at2, mt)

	before := time.Now().Add(-time.Minute)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, d.m("f"), []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}, 0); err != nil {
		t.Fatalf("utimensat UTIME_NOW: %v", err)
	}
	for side, p := range map[string]string{"mount": d.m("f"), "host": d.h("f")} {
		st := mustLstat(t, p)
		for what, ts := range map[string]unix.Timespec{"atime": st.Atim, "mtime": st.Mtim} {
			if got := time.Unix(ts.Unix()); got.Before(before) {
				t.Errorf("%s side %s after UTIME_NOW: got %v, want the current time (after %v)", side, what, got, before)
			}
		}
	}

	// AT_SYMLINK_NOFOLLOW sets the symlink's own times.
	fst := mustLstat(t, d.h("f"))
	lt := unix.Timespec{Sec: 1300000000, Nsec: 42}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, d.m("link"), []unix.Timespec{lt, lt}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("utimensat AT_SYMLINK_NOFOLLOW: %v", err)
	}
	if got := mustLstat(t, d.h("link")).Mtim; got != lt {
		t.Errorf("symlink mtime on the host: got %v, want %v", got, lt)
	}
	if got := mustLstat(t, d.h("f")).Mtim; got != fst.Mtim {
		t.Errorf("target mtime changed by lutimes of the symlink: got %v, want %v", got, fst.Mtim)
	}
}

// testSymlinkReadlink creates symlinks with various targets through the mount.
func testSymlinkReadlink(t *testing.T, d dirs) {
	targets := []string{
		"target",
		"a/b/../c",
		"../../../../outside",
		"/etc/passwd",
		strings.Repeat("long/", 200),
	}
	for i, target := range targets {
		name := fmt.Sprintf("link%d", i)
		if err := os.Symlink(target, d.m(name)); err != nil {
			t.Errorf("symlink %q: %v", target, err)
			continue
		}
		for side, p := range map[string]string{"mount": d.m(name), "host": d.h(name)} {
			if got, err := os.Readlink(p); err != nil || got != target {
				t.Errorf("readlink on the %s side: got %q, %v; want %q", side, got, err, target)
			}
			if st := mustLstat(t, p); st.Mode&unix.S_IFMT != unix.S_IFLNK || st.Size != int64(len(target)) {
				t.Errorf("lstat on the %s side: mode %o size %d, want a symlink of size %d", side, st.Mode, st.Size, len(target))
			}
		}
	}
	err := os.Symlink("x", d.m("link0"))
	wantErrno(t, "symlink over an existing name", err, unix.EEXIST)
	_, err = os.Readlink(d.m("missing"))
	wantErrno(t, "readlink of a missing name", err, unix.ENOENT)
	mustWrite(t, d.m("regular"), nil, 0o644)
	_, err = os.Readlink(d.m("regular"))
	wantErrno(t, "readlink of a regular file", err, unix.EINVAL)
}

// testMknodFIFO creates FIFOs through the mount (never opening them).
func testMknodFIFO(t *testing.T, d dirs) {
	if err := unix.Mkfifo(d.m("fifo"), 0o640); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	if err := unix.Mknod(d.m("fifo2"), unix.S_IFIFO|0o600, 0); err != nil {
		t.Fatalf("mknod S_IFIFO: %v", err)
	}
	for _, name := range []string{"fifo", "fifo2"} {
		for side, p := range map[string]string{"mount": d.m(name), "host": d.h(name)} {
			if st := mustLstat(t, p); st.Mode&unix.S_IFMT != unix.S_IFIFO {
				t.Errorf("%s on the %s side: mode %o, want a FIFO", name, side, st.Mode)
			}
		}
	}
	wantErrno(t, "mkfifo over an existing name", unix.Mkfifo(d.m("fifo"), 0o600), unix.EEXIST)
}

// testMkdirRmdir creates and removes directories.
func testMkdirRmdir(t *testing.T, d dirs) {
	if err := os.Mkdir(d.m("a"), 0o750); err != nil {
		t.Fatalf("mkdir a: %v", err)
	}
	if st := mustLstat(t, d.h("a")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("a on the host: mode %o, want a directory", st.Mode)
	}
	wantErrno(t, "mkdir over an existing directory", os.Mkdir(d.m("a"), 0o755), unix.EEXIST)
	if err := os.Mkdir(d.m("a/b"), 0o755); err != nil {
		t.Fatalf("mkdir a/b: %v", err)
	}
	if got, want := mustLstat(t, d.m("a")).Nlink, mustLstat(t, d.h("a")).Nlink; got != want {
		t.Errorf("nlink of a directory with a subdirectory: mount %d, host %d", got, want)
	}
	wantErrno(t, "rmdir of a non-empty directory", unix.Rmdir(d.m("a")), unix.ENOTEMPTY)
	mustWrite(t, d.m("file"), nil, 0o644)
	wantErrno(t, "rmdir of a regular file", unix.Rmdir(d.m("file")), unix.ENOTDIR)
	wantErrno(t, "mkdir below a regular file", os.Mkdir(d.m("file/x"), 0o755), unix.ENOTDIR)
	wantErrno(t, "rmdir of a missing directory", unix.Rmdir(d.m("missing")), unix.ENOENT)
	if err := unix.Rmdir(d.m("a/b")); err != nil {
		t.Fatalf("rmdir a/b: %v", err)
	}
	if err := unix.Rmdir(d.m("a")); err != nil {
		t.Fatalf("rmdir a: %v", err)
	}
	wantMissing(t, d.m("a"))
	wantMissing(t, d.h("a"))
}

// testUnlink removes files, including one that is still open.
func testUnlink(t *testing.T, d dirs) {
	mustWrite(t, d.m("f"), []byte("still readable"), 0o644)
	f, err := os.Open(d.m("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Unlink(d.m("f")); err != nil {
		t.Fatalf("unlink: %v", err)
	}
	wantMissing(t, d.m("f"))
	wantMissing(t, d.h("f"))
	if got, err := io.ReadAll(f); err != nil || string(got) != "still readable" {
		t.Errorf("read of the open unlinked file: got %q, %v; want %q", got, err, "still readable")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 0 {
		t.Errorf("fstat of the open unlinked file: nlink %d, %v; want 0, nil", st.Nlink, err)
	}
	wantErrno(t, "unlink of a missing file", unix.Unlink(d.m("f")), unix.ENOENT)
	if err := os.Mkdir(d.m("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "unlink of a directory", unix.Unlink(d.m("dir")), unix.EISDIR)
	if err := os.Symlink("dir", d.m("link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unlink(d.m("link")); err != nil {
		t.Fatalf("unlink of a symlink: %v", err)
	}
	wantMissing(t, d.h("link"))
	if _, err := os.Stat(d.h("dir")); err != nil {
		t.Errorf("symlink target after unlinking the symlink: %v", err)
	}
}

// testRename covers plain renames, overwriting, RENAME_NOREPLACE,
// RENAME_EXCHANGE and RENAME_WHITEOUT.
func testRename(t *testing.T, d dirs) {
	t.Run("plain", func(t *testing.T) {
		mustWrite(t, d.m("a"), []byte("A"), 0o644)
		ino := mustLstat(t, d.m("a")).Ino
		if err := os.Rename(d.m("a"), d.m("b")); err != nil {
			t.Fatalf("rename: %v", err)
		}
		wantMissing(t, d.m("a"))
		wantMissing(t, d.h("a"))
		wantContent(t, d.m("b"), []byte("A"))
		wantContent(t, d.h("b"), []byte("A"))
		if got := mustLstat(t, d.m("b")).Ino; got != ino {
			t.Errorf("inode number after rename: got %d, want %d", got, ino)
		}
	})
	t.Run("overwrite", func(t *testing.T) {
		mustWrite(t, d.m("c"), []byte("new"), 0o644)
		mustWrite(t, d.m("d"), []byte("old"), 0o644)
		if err := os.Rename(d.m("c"), d.m("d")); err != nil {
			t.Fatalf("rename over an existing file: %v", err)
		}
		wantMissing(t, d.m("c"))
		wantContent(t, d.m("d"), []byte("new"))
		wantContent(t, d.h("d"), []byte("new"))
	})
	t.Run("across-directories", func(t *testing.T) {
		for _, dir := range []string{"x", "y"} {
			if err := os.Mkdir(d.m(dir), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		mustWrite(t, d.m("x/f"), []byte("moved"), 0o644)
		if err := os.Rename(d.m("x/f"), d.m("y/g")); err != nil {
			t.Fatalf("rename x/f y/g: %v", err)
		}
		if err := os.Rename(d.m("y"), d.m("x/y")); err != nil {
			t.Fatalf("rename directory y into x: %v", err)
		}
		wantContent(t, d.m("x/y/g"), []byte("moved"))
		wantContent(t, d.h("x/y/g"), []byte("moved"))
		wantMissing(t, d.m("y"))
	})
	t.Run("errors", func(t *testing.T) {
		for _, dir := range []string{"e1", "e2", "e2/child"} {
			if err := os.Mkdir(d.m(dir), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		mustWrite(t, d.m("ef"), nil, 0o644)
		wantErrno(t, "rename a directory over a non-empty one", unix.Rename(d.m("e1"), d.m("e2")), unix.ENOTEMPTY)
		wantErrno(t, "rename a directory over a file", unix.Rename(d.m("e1"), d.m("ef")), unix.ENOTDIR)
		wantErrno(t, "rename a file over a directory", unix.Rename(d.m("ef"), d.m("e1")), unix.EISDIR)
		wantErrno(t, "rename a missing file", unix.Rename(d.m("missing"), d.m("e3")), unix.ENOENT)
		wantErrno(t, "rename a directory into itself", unix.Rename(d.m("e2"), d.m("e2/child/sub")), unix.EINVAL)
	})
	t.Run("noreplace", func(t *testing.T) {
		mustWrite(t, d.m("n1"), []byte("1"), 0o644)
		mustWrite(t, d.m("n2"), []byte("2"), 0o644)
		err := unix.Renameat2(unix.AT_FDCWD, d.m("n1"), unix.AT_FDCWD, d.m("n2"), unix.RENAME_NOREPLACE)
		wantErrno(t, "RENAME_NOREPLACE over an existing file", err, unix.EEXIST)
		wantContent(t, d.h("n1"), []byte("1"))
		wantContent(t, d.h("n2"), []byte("2"))
		if err := unix.Renameat2(unix.AT_FDCWD, d.m("n1"), unix.AT_FDCWD, d.m("n3"), unix.RENAME_NOREPLACE); err != nil {
			t.Fatalf("RENAME_NOREPLACE to a free name: %v", err)
		}
		wantMissing(t, d.h("n1"))
		wantContent(t, d.m("n3"), []byte("1"))
	})
	t.Run("exchange", func(t *testing.T) {
		mustWrite(t, d.m("x1"), []byte("file"), 0o644)
		if err := os.Mkdir(d.m("x2"), 0o755); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, d.m("x2/inside"), []byte("in dir"), 0o644)
		if err := unix.Renameat2(unix.AT_FDCWD, d.m("x1"), unix.AT_FDCWD, d.m("x2"), unix.RENAME_EXCHANGE); err != nil {
			t.Fatalf("RENAME_EXCHANGE: %v", err)
		}
		for side, dd := range map[string]func(string) string{"mount": d.m, "host": d.h} {
			if st := mustLstat(t, dd("x1")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
				t.Errorf("x1 on the %s side after the exchange: mode %o, want a directory", side, st.Mode)
			}
			wantContent(t, dd("x1/inside"), []byte("in dir"))
			wantContent(t, dd("x2"), []byte("file"))
		}
		err := unix.Renameat2(unix.AT_FDCWD, d.m("x2"), unix.AT_FDCWD, d.m("missing"), unix.RENAME_EXCHANGE)
		wantErrno(t, "RENAME_EXCHANGE with a missing target", err, unix.ENOENT)
	})
	t.Run("whiteout", func(t *testing.T) {
		mustWrite(t, d.m("w1"), []byte("w"), 0o644)
		if err := unix.Renameat2(unix.AT_FDCWD, d.m("w1"), unix.AT_FDCWD, d.m("w2"), unix.RENAME_WHITEOUT); err != nil {
			t.Fatalf("RENAME_WHITEOUT: %v", err)
		}
		wantContent(t, d.h("w2"), []byte("w"))
		for side, p := range map[string]string{"mount": d.m("w1"), "host": d.h("w1")} {
			st := mustLstat(t, p)
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("w1 on the %s side after RENAME_WHITEOUT: mode %o rdev %d:%d, want a 0:0 character device (whiteout)",
					side, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
		}
	})
}

// testHardLink links a file under a second name.
func testHardLink(t *testing.T, d dirs) {
	mustWrite(t, d.m("a"), []byte("shared"), 0o644)
	if err := os.Link(d.m("a"), d.m("b")); err != nil {
		t.Fatalf("link: %v", err)
	}
	sa, sb := mustLstat(t, d.m("a")), mustLstat(t, d.m("b"))
	if sa.Ino != sb.Ino || sa.Nlink != 2 || sb.Nlink != 2 {
		t.Errorf("through the mount: a ino %d nlink %d, b ino %d nlink %d; want the same inode with nlink 2",
			sa.Ino, sa.Nlink, sb.Ino, sb.Nlink)
	}
	if ha, hb := mustLstat(t, d.h("a")), mustLstat(t, d.h("b")); ha.Ino != hb.Ino || ha.Nlink != 2 {
		t.Errorf("on the host: a ino %d nlink %d, b ino %d; want the same inode with nlink 2", ha.Ino, ha.Nlink, hb.Ino)
	}
	mustWrite(t, d.m("b"), []byte("changed via b"), 0o644)
	wantContent(t, d.m("a"), []byte("changed via b"))
	if err := unix.Unlink(d.m("a")); err != nil {
		t.Fatalf("unlink a: %v", err)
	}
	if got := mustLstat(t, d.m("b")).Nlink; got != 1 {
		t.Errorf("nlink of b after unlinking a: got %d, want 1", got)
	}
	mustWrite(t, d.m("c"), nil, 0o644)
	wantErrno(t, "link over an existing name", os.Link(d.m("b"), d.m("c")), unix.EEXIST)
	if err := os.Mkdir(d.m("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "link of a directory", os.Link(d.m("dir"), d.m("dirlink")), unix.EPERM)
}

// testTmpfile creates an O_TMPFILE file and gives it a name with linkat.
func testTmpfile(t *testing.T, d dirs) {
	fd, err := unix.Open(d.mnt, unix.O_TMPFILE|unix.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("open O_TMPFILE: %v", err)
	}
	defer unix.Close(fd)
	if _, err := unix.Pwrite(fd, []byte("anonymous"), 0); err != nil {
		t.Fatalf("pwrite: %v", err)
	}
	if n := names(t, d.src); len(n) != 0 {
		t.Errorf("host directory holds %q before the linkat, want nothing", n)
	}
	err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, d.m("named"), unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		t.Fatalf("linkat /proc/self/fd/%d: %v", fd, err)
	}
	wantContent(t, d.m("named"), []byte("anonymous"))
	wantContent(t, d.h("named"), []byte("anonymous"))
	if st := mustLstat(t, d.h("named")); st.Mode != unix.S_IFREG|0o600 || st.Nlink != 1 {
		t.Errorf("named file on the host: mode %o nlink %d, want %o and 1", st.Mode, st.Nlink, unix.S_IFREG|0o600)
	}
}

// testStatfs compares statfs through the mount with the host's.
func testStatfs(t *testing.T, d dirs) {
	var m, h unix.Statfs_t
	if err := unix.Statfs(d.mnt, &m); err != nil {
		t.Fatalf("statfs through the mount: %v", err)
	}
	if err := unix.Statfs(d.src, &h); err != nil {
		t.Fatalf("statfs on the host: %v", err)
	}
	const fuseSuperMagic = 0x65735546
	if m.Type != fuseSuperMagic {
		t.Errorf("f_type: got %#x, want FUSE_SUPER_MAGIC %#x", m.Type, fuseSuperMagic)
	}
	// Free counts move with whatever else uses the host file system.
	if m.Blocks != h.Blocks || m.Bsize != h.Bsize || m.Files != h.Files || m.Namelen != h.Namelen || m.Frsize != h.Frsize {
		t.Errorf("statfs: mount has blocks %d bsize %d frsize %d files %d namelen %d; host has %d %d %d %d %d",
			m.Blocks, m.Bsize, m.Frsize, m.Files, m.Namelen, h.Blocks, h.Bsize, h.Frsize, h.Files, h.Namelen)
	}
}

// testFsync syncs files and a directory.
func testFsync(t *testing.T, d dirs) {
	f, err := os.Create(d.m("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("durable")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Errorf("fsync: %v", err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Errorf("fdatasync: %v", err)
	}
	wantContent(t, d.h("f"), []byte("durable"))
	dir, err := os.Open(d.mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		t.Errorf("fsync of a directory: %v", err)
	}
}

// testFallocate allocates, extends and punches holes.
func testFallocate(t *testing.T, d dirs) {
	t.Run("extend", func(t *testing.T) {
		f, err := os.Create(d.m("grow"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Fallocate(int(f.Fd()), 0, 1024, 4096); err != nil {
			t.Fatalf("fallocate(0, 1024, 4096): %v", err)
		}
		for side, p := range map[string]string{"mount": d.m("grow"), "host": d.h("grow")} {
			if st := mustLstat(t, p); st.Size != 5120 {
				t.Errorf("size on the %s side: got %d, want 5120", side, st.Size)
			}
		}
		wantContent(t, d.m("grow"), make([]byte, 5120))
	})
	t.Run("keep-size", func(t *testing.T) {
		mustWrite(t, d.m("keep"), []byte("1234"), 0o644)
		before := mustLstat(t, d.h("keep")).Blocks
		f, err := os.OpenFile(d.m("keep"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20); err != nil {
			t.Fatalf("fallocate(KEEP_SIZE, 0, 1 MiB): %v", err)
		}
		st := mustLstat(t, d.h("keep"))
		if st.Size != 4 {
			t.Errorf("size after KEEP_SIZE: got %d, want 4", st.Size)
		}
		// The allocated range covers the written block, so it is the minimum.
		if st.Blocks < (1<<20)/512 {
			t.Errorf("host blocks after allocating 1 MiB (%d before): got %d, want at least %d", before, st.Blocks, (1<<20)/512)
		}
		wantContent(t, d.m("keep"), []byte("1234"))
	})
	t.Run("punch-hole", func(t *testing.T) {
		data := bytes.Repeat([]byte{0xaa}, 64<<10)
		f, err := os.Create(d.m("punch"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		before := mustLstat(t, d.h("punch")).Blocks
		const off, n = 4096, 16 << 10
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
			t.Fatalf("fallocate(PUNCH_HOLE|KEEP_SIZE): %v", err)
		}
		want := bytes.Clone(data)
		clear(want[off : off+n])
		wantContent(t, d.m("punch"), want)
		wantContent(t, d.h("punch"), want)
		if after := mustLstat(t, d.h("punch")).Blocks; after >= before {
			t.Errorf("host blocks after punching 16 KiB: got %d, want fewer than %d", after, before)
		}
	})
}

// testSeekDataHole compares SEEK_DATA and SEEK_HOLE through the mount with
// the same calls on the host file.
func testSeekDataHole(t *testing.T, d dirs) {
	const size = 8 << 20
	f, err := os.Create(d.m("sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("d"), 64<<10), 2<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("e"), 4096), size-4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	h, err := os.Open(d.h("sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if off, err := unix.Seek(int(h.Fd()), 0, unix.SEEK_DATA); err == nil && off == 0 {
		t.Logf("the host file system reports no hole at 0; comparing with it anyway")
	}
	queries := []struct {
		off    int64
		whence int
	}{
		{0, unix.SEEK_DATA}, {0, unix.SEEK_HOLE},
		{2 << 20, unix.SEEK_DATA}, {2 << 20, unix.SEEK_HOLE},
		{2<<20 + 100, unix.SEEK_HOLE}, {3 << 20, unix.SEEK_DATA},
		{size - 1, unix.SEEK_DATA}, {size - 1, unix.SEEK_HOLE},
		{size, unix.SEEK_DATA}, {size, unix.SEEK_HOLE}, {size + 1, unix.SEEK_HOLE},
	}
	whenceName := map[int]string{unix.SEEK_DATA: "SEEK_DATA", unix.SEEK_HOLE: "SEEK_HOLE"}
	for _, q := range queries {
		wantOff, wantErr := unix.Seek(int(h.Fd()), q.off, q.whence)
		gotOff, gotErr := unix.Seek(int(f.Fd()), q.off, q.whence)
		if gotOff != wantOff || gotErr != wantErr {
			t.Errorf("lseek(%d, %s): mount gives %d, %v; host gives %d, %v",
				q.off, whenceName[q.whence], gotOff, gotErr, wantOff, wantErr)
		}
	}
}

// testCopyFileRange copies between two files on the mount.
func testCopyFileRange(t *testing.T, d dirs) {
	data := randomBytes(1, 3<<20)
	mustWrite(t, d.m("src"), data, 0o644)
	in, err := os.Open(d.m("src"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(d.m("dst"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	const srcOff, dstOff, n = 512 << 10, 4096, 1 << 20
	roff, woff := int64(srcOff), int64(dstOff)
	for copied := 0; copied < n; {
		c, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, n-copied, 0)
		if err != nil {
			t.Fatalf("copy_file_range after %d bytes: %v", copied, err)
		}
		if c == 0 {
			t.Fatalf("copy_file_range returned 0 after %d of %d bytes", copied, n)
		}
		copied += c
	}
	if roff != srcOff+n || woff != dstOff+n {
		t.Errorf("offsets after copying: in %d out %d, want %d %d", roff, woff, srcOff+n, dstOff+n)
	}
	want := append(make([]byte, dstOff), data[srcOff:srcOff+n]...)
	wantContent(t, d.m("dst"), want)
	wantContent(t, d.h("dst"), want)
}

// testSyncfs syncs the whole mount.
func testSyncfs(t *testing.T, d dirs) {
	mustWrite(t, d.m("f"), []byte("x"), 0o644)
	f, err := os.Open(d.m("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Errorf("syncfs: %v", err)
	}
}

// testLargeFile writes 64 MiB and checks it through the mount and on the host.
func testLargeFile(t *testing.T, d dirs) {
	const size, chunk = 64 << 20, 1 << 20
	data := randomBytes(64, size)
	f, err := os.Create(d.m("big"))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < size; off += chunk {
		if _, err := f.Write(data[off : off+chunk]); err != nil {
			f.Close()
			t.Fatalf("write at %d: %v", off, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	want := sha256.Sum256(data)
	for side, p := range map[string]string{"mount": d.m("big"), "host": d.h("big")} {
		if sum, n := fileSHA256(t, p); sum != want || n != size {
			t.Errorf("%s side: %d bytes with sha256 %x, want %d bytes with %x", side, n, sum, size, want)
		}
	}
	// Reads at odd offsets and lengths.
	g, err := os.Open(d.m("big"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, off := range []int64{1, 4095, 1<<20 - 3, size - 7} {
		buf := make([]byte, 200000)
		n, err := g.ReadAt(buf, off)
		wantN := min(len(buf), size-int(off))
		if n != wantN || (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], data[off:int(off)+n]) {
			t.Errorf("pread(%d bytes at %d): got %d bytes, %v (match %v); want %d matching bytes",
				len(buf), off, n, err, bytes.Equal(buf[:n], data[off:int(off)+n]), wantN)
		}
	}
}

// testParallelWriters writes distinct files from many goroutines at once.
func testParallelWriters(t *testing.T, d dirs) {
	const writers, files, size = 8, 4, 256 << 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range files {
				name := fmt.Sprintf("w%d-f%d", w, i)
				if err := os.WriteFile(d.m(name), randomBytes(uint64(w*files+i), size), 0o644); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for w := range writers {
		for i := range files {
			name := fmt.Sprintf("w%d-f%d", w, i)
			want := randomBytes(uint64(w*files+i), size)
			wantContent(t, d.m(name), want)
			wantContent(t, d.h(name), want)
		}
	}
	if got := len(names(t, d.mnt)); got != writers*files {
		t.Errorf("directory holds %d entries, want %d", got, writers*files)
	}
}
