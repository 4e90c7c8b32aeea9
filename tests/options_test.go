package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReaddirLarge lists a directory of 5000 entries of mixed types and name
// lengths, with READDIRPLUS and without, and checks every name appears
// exactly once with the right type.
func TestReaddirLarge(t *testing.T) {
	requireMountEnv(t)
	variants := []struct {
		name  string
		flags []string
	}{
		{"readdirplus", nil},
		{"no-readdirplus", []string{"--no-readdirplus"}},
		{"readdirplus-fh-mandatory", []string{"--inode-file-handles=mandatory"}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			src, mnt := startMount(t, v.flags...)
			d := subdir(t, mnt, src, "big")
			const n = 5000
			want := map[string]os.FileMode{}
			for i := range n {
				// Names of all lengths up to NAME_MAX, so entries straddle
				// reply-buffer boundaries at every alignment.
				name := fmt.Sprintf("e%05d-", i) + strings.Repeat("x", i%(255-7))
				var err error
				switch i % 10 {
				case 0:
					want[name] = os.ModeDir
					err = os.Mkdir(d.m(name), 0o755)
				case 1:
					want[name] = os.ModeSymlink
					err = os.Symlink("target", d.m(name))
				default:
					want[name] = 0
					err = os.WriteFile(d.m(name), nil, 0o644)
				}
				if err != nil {
					t.Fatalf("creating entry %d: %v", i, err)
				}
			}

			entries, err := os.ReadDir(d.mnt)
			if err != nil {
				t.Fatalf("readdir: %v", err)
			}
			seen := map[string]int{}
			for _, e := range entries {
				seen[e.Name()]++
				wantType, ok := want[e.Name()]
				if !ok {
					t.Errorf("readdir returned unexpected entry %q", e.Name())
					continue
				}
				if got := e.Type(); got != wantType {
					t.Errorf("entry %q: type %v, want %v", e.Name(), got, wantType)
				}
			}
			for name := range want {
				if seen[name] != 1 {
					t.Errorf("entry %q seen %d times, want once", name, seen[name])
				}
			}
			if len(entries) != n {
				t.Errorf("readdir returned %d entries, want %d", len(entries), n)
			}

			// Spot-check that entries look up to the host's inodes.
			for _, name := range []string{
				fmt.Sprintf("e%05d-", 0), fmt.Sprintf("e%05d-x", 1), fmt.Sprintf("e%05d-xx", 2),
				fmt.Sprintf("e%05d-", 4999) + strings.Repeat("x", 4999%(255-7)),
			} {
				if m, h := mustLstat(t, d.m(name)), mustLstat(t, d.h(name)); m.Ino != h.Ino || m.Mode != h.Mode {
					t.Errorf("%s: mount ino %d mode %o, host ino %d mode %o", name, m.Ino, m.Mode, h.Ino, h.Mode)
				}
			}
		})
	}
}

// TestXattr exercises user.* extended attributes with --xattr.
func TestXattr(t *testing.T) {
	src, mnt := startMount(t, "--xattr")
	d := subdir(t, mnt, src, "x")
	mustWrite(t, d.m("f"), nil, 0o644)
	if err := os.Mkdir(d.m("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := d.m("f")

	_, err := unix.Getxattr(f, "user.missing", make([]byte, 64))
	wantErrno(t, "getxattr of a missing attribute", err, unix.ENODATA)
	if err := unix.Setxattr(f, "user.a", []byte("value-a"), 0); err != nil {
		t.Fatalf("setxattr user.a: %v", err)
	}
	if n, err := unix.Getxattr(f, "user.a", nil); err != nil || n != len("value-a") {
		t.Errorf("getxattr size query: got %d, %v; want %d, nil", n, err, len("value-a"))
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(f, "user.a", buf); err != nil || string(buf[:n]) != "value-a" {
		t.Errorf("getxattr user.a: got %q, %v; want %q", buf[:n], err, "value-a")
	}
	if n, err := unix.Lgetxattr(d.h("f"), "user.a", buf); err != nil || string(buf[:n]) != "value-a" {
		t.Errorf("getxattr user.a on the host: got %q, %v; want %q", buf[:n], err, "value-a")
	}
	_, err = unix.Getxattr(f, "user.a", make([]byte, 3))
	wantErrno(t, "getxattr into a too small buffer", err, unix.ERANGE)

	if err := unix.Setxattr(f, "user.b", nil, 0); err != nil {
		t.Fatalf("setxattr user.b (empty value): %v", err)
	}
	if n, err := unix.Getxattr(f, "user.b", buf); err != nil || n != 0 {
		t.Errorf("getxattr of an empty value: got %d bytes, %v; want 0, nil", n, err)
	}
	list := listxattr(t, f)
	for _, want := range []string{"user.a", "user.b"} {
		if !contains(list, want) {
			t.Errorf("listxattr: got %q, want it to include %q", list, want)
		}
	}
	_, err = unix.Listxattr(f, make([]byte, 3))
	wantErrno(t, "listxattr into a too small buffer", err, unix.ERANGE)

	wantErrno(t, "setxattr XATTR_CREATE of an existing attribute",
		unix.Setxattr(f, "user.a", []byte("x"), unix.XATTR_CREATE), unix.EEXIST)
	wantErrno(t, "setxattr XATTR_REPLACE of a missing attribute",
		unix.Setxattr(f, "user.c", []byte("x"), unix.XATTR_REPLACE), unix.ENODATA)
	if err := unix.Setxattr(f, "user.a", []byte("replaced"), unix.XATTR_REPLACE); err != nil {
		t.Errorf("setxattr XATTR_REPLACE: %v", err)
	}
	if n, err := unix.Getxattr(f, "user.a", buf); err != nil || string(buf[:n]) != "replaced" {
		t.Errorf("getxattr after replace: got %q, %v; want %q", buf[:n], err, "replaced")
	}

	if err := unix.Removexattr(f, "user.a"); err != nil {
		t.Fatalf("removexattr user.a: %v", err)
	}
	_, err = unix.Getxattr(f, "user.a", buf)
	wantErrno(t, "getxattr after removexattr", err, unix.ENODATA)
	wantErrno(t, "removexattr of a missing attribute", unix.Removexattr(f, "user.a"), unix.ENODATA)
	if _, err := unix.Lgetxattr(d.h("f"), "user.a", buf); err != unix.ENODATA {
		t.Errorf("getxattr on the host after removexattr: got %v, want ENODATA", err)
	}

	// Directories, and attributes set on the host side.
	if err := unix.Setxattr(d.m("dir"), "user.d", []byte("on a dir"), 0); err != nil {
		t.Errorf("setxattr on a directory: %v", err)
	}
	if err := unix.Lsetxattr(d.h("f"), "user.host", []byte("from host"), 0); err != nil {
		t.Fatalf("setxattr on the host: %v", err)
	}
	if n, err := unix.Getxattr(f, "user.host", buf); err != nil || string(buf[:n]) != "from host" {
		t.Errorf("getxattr of a host-set attribute: got %q, %v; want %q", buf[:n], err, "from host")
	}
}

// TestXattrDisabled checks that without --xattr every xattr call fails with
// EOPNOTSUPP.
func TestXattrDisabled(t *testing.T) {
	src, mnt := startMount(t)
	d := subdir(t, mnt, src, "x")
	mustWrite(t, d.m("f"), nil, 0o644)
	if err := unix.Lsetxattr(d.h("f"), "user.host", []byte("v"), 0); err != nil {
		t.Fatalf("setxattr on the host: %v", err)
	}
	buf := make([]byte, 64)
	_, err := unix.Getxattr(d.m("f"), "user.host", buf)
	wantErrno(t, "getxattr", err, unix.EOPNOTSUPP)
	wantErrno(t, "setxattr", unix.Setxattr(d.m("f"), "user.a", []byte("v"), 0), unix.EOPNOTSUPP)
	_, err = unix.Listxattr(d.m("f"), buf)
	wantErrno(t, "listxattr", err, unix.EOPNOTSUPP)
	wantErrno(t, "removexattr", unix.Removexattr(d.m("f"), "user.host"), unix.EOPNOTSUPP)
	if _, err := unix.Lgetxattr(d.h("f"), "user.a", buf); err != unix.ENODATA {
		t.Errorf("host side after the refused setxattr: got %v, want ENODATA", err)
	}
}

// listxattr returns the attribute names of path.
func listxattr(t *testing.T, path string) []string {
	t.Helper()
	n, err := unix.Listxattr(path, nil)
	if err != nil {
		t.Fatalf("listxattr size query: %v", err)
	}
	buf := make([]byte, n)
	n, err = unix.Listxattr(path, buf)
	if err != nil {
		t.Fatalf("listxattr: %v", err)
	}
	var out []string
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) > 0 {
			out = append(out, string(name))
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestReadonly checks that with --readonly reads work and every modifying
// operation fails with EROFS, leaving the host side untouched.
func TestReadonly(t *testing.T) {
	src, mnt := startMount(t, "--readonly", "--xattr")
	// Populate from the host side; nothing has been looked up yet.
	mustWrite(t, filepath.Join(src, "f"), []byte("read me"), 0o644)
	if err := os.Mkdir(filepath.Join(src, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(src, "f"), "user.x", []byte("xv"), 0); err != nil {
		t.Fatal(err)
	}
	m := func(name string) string { return filepath.Join(mnt, name) }
	before := snapshotTree(t, src)

	// Reads.
	wantContent(t, m("f"), []byte("read me"))
	if got, err := os.Readlink(m("link")); err != nil || got != "f" {
		t.Errorf("readlink: got %q, %v; want %q", got, err, "f")
	}
	if got := names(t, mnt); len(got) != 4 {
		t.Errorf("readdir: got %q, want 4 entries", got)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		t.Errorf("statfs: %v", err)
	}
	buf := make([]byte, 16)
	if n, err := unix.Getxattr(m("f"), "user.x", buf); err != nil || string(buf[:n]) != "xv" {
		t.Errorf("getxattr: got %q, %v; want %q", buf[:n], err, "xv")
	}

	openErr := func(path string, flags int) error {
		fd, err := unix.Open(path, flags, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	ops := []struct {
		name string
		do   func() error
	}{
		{"open O_WRONLY", func() error { return openErr(m("f"), unix.O_WRONLY) }},
		{"open O_RDWR", func() error { return openErr(m("f"), unix.O_RDWR) }},
		{"open O_TRUNC", func() error { return openErr(m("f"), unix.O_WRONLY|unix.O_TRUNC) }},
		{"create", func() error { return openErr(m("new"), unix.O_WRONLY|unix.O_CREAT) }},
		{"O_TMPFILE", func() error { return openErr(mnt, unix.O_RDWR|unix.O_TMPFILE) }},
		{"mkdir", func() error { return unix.Mkdir(m("newdir"), 0o755) }},
		{"mkfifo", func() error { return unix.Mkfifo(m("fifo"), 0o644) }},
		{"symlink", func() error { return unix.Symlink("f", m("link2")) }},
		{"link", func() error { return unix.Link(m("f"), m("hard")) }},
		{"unlink", func() error { return unix.Unlink(m("f")) }},
		{"rmdir", func() error { return unix.Rmdir(m("empty")) }},
		{"rename", func() error { return unix.Rename(m("f"), m("g")) }},
		{"rename exchange", func() error {
			return unix.Renameat2(unix.AT_FDCWD, m("dir"), unix.AT_FDCWD, m("empty"), unix.RENAME_EXCHANGE)
		}},
		{"chmod", func() error { return unix.Chmod(m("f"), 0o600) }},
		{"chown", func() error { return unix.Lchown(m("f"), 1000, 1000) }},
		{"utimes", func() error {
			return unix.UtimesNanoAt(unix.AT_FDCWD, m("f"), []unix.Timespec{{Sec: 1}, {Sec: 1}}, 0)
		}},
		{"truncate", func() error { return unix.Truncate(m("f"), 1) }},
		{"setxattr", func() error { return unix.Setxattr(m("f"), "user.y", []byte("v"), 0) }},
		{"removexattr", func() error { return unix.Removexattr(m("f"), "user.x") }},
	}
	for _, op := range ops {
		wantErrno(t, op.name, op.do(), unix.EROFS)
	}
	if after := snapshotTree(t, src); after != before {
		t.Errorf("host side changed on a read-only mount:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// snapshotTree renders names, types, modes, owners, sizes, mtimes, link
// targets and file contents of the tree at root, for before/after comparison.
func snapshotTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := mustLstat(t, p)
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(&b, "%s mode=%o uid=%d gid=%d size=%d nlink=%d mtime=%v", rel, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %q", target)
		case unix.S_IFREG:
			fmt.Fprintf(&b, " content=%q", mustRead(t, p))
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return b.String()
}

// TestCachePolicies checks data correctness under each --cache policy, and
// with --cache=never that a host-side change is seen after reopening.
func TestCachePolicies(t *testing.T) {
	requireMountEnv(t)
	for _, policy := range []string{"auto", "always", "never", "metadata"} {
		t.Run(policy, func(t *testing.T) {
			src, mnt := startMount(t, "--cache="+policy)
			d := subdir(t, mnt, src, "c")
			// Written through the mount, seen on the host and through the mount.
			mustWrite(t, d.m("a"), []byte("through the mount"), 0o644)
			wantContent(t, d.h("a"), []byte("through the mount"))
			wantContent(t, d.m("a"), []byte("through the mount"))
			// Written on the host before the mount ever looked the name up.
			mustWrite(t, d.h("b"), []byte("from the host"), 0o644)
			wantContent(t, d.m("b"), []byte("from the host"))

			if policy != "never" {
				return
			}
			// Changed on the host after the mount read it: with no caching
			// the next open must see the new content and size.
			for _, content := range []string{"changed on the host, and longer", "short"} {
				mustWrite(t, d.h("b"), []byte(content), 0o644)
				wantContent(t, d.m("b"), []byte(content))
				if st := mustLstat(t, d.m("b")); st.Size != int64(len(content)) {
					t.Errorf("size through the mount after a host change: got %d, want %d", st.Size, len(content))
				}
			}
			if err := os.Chmod(d.h("b"), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := mustLstat(t, d.m("b")).Mode & 0o777; got != 0o600 {
				t.Errorf("mode through the mount after a host chmod: got %o, want 600", got)
			}
		})
	}
}

// TestWriteback checks --writeback: partial writes through a write-only fd
// (the kernel must read the rest of the page) and O_APPEND writes.
func TestWriteback(t *testing.T) {
	requireMountEnv(t)
	for _, mode := range fileHandleModes {
		t.Run(mode.name, func(t *testing.T) {
			src, mnt := startMount(t, append([]string{"--writeback"}, mode.flags...)...)
			d := subdir(t, mnt, src, "w")

			mustWrite(t, d.h("f"), []byte("0123456789"), 0o644)
			f, err := os.OpenFile(d.m("f"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatalf("open O_WRONLY: %v", err)
			}
			if _, err := f.WriteAt([]byte("ab"), 3); err != nil {
				t.Fatalf("pwrite through a write-only fd: %v", err)
			}
			if _, err := f.WriteAt([]byte("END"), 12); err != nil {
				t.Fatalf("pwrite past EOF: %v", err)
			}
			if err := f.Sync(); err != nil {
				t.Errorf("fsync: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			want := []byte("012ab56789\x00\x00END")
			wantContent(t, d.m("f"), want)
			wantContent(t, d.h("f"), want)

			mustWrite(t, d.m("log"), []byte("start."), 0o644)
			for _, s := range []string{"one.", "two."} {
				g, err := os.OpenFile(d.m("log"), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatalf("open O_APPEND: %v", err)
				}
				if _, err := g.Write([]byte(s)); err != nil {
					t.Fatalf("append: %v", err)
				}
				if err := g.Sync(); err != nil {
					t.Errorf("fsync: %v", err)
				}
				if err := g.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
			}
			wantContent(t, d.m("log"), []byte("start.one.two."))
			wantContent(t, d.h("log"), []byte("start.one.two."))

			// Basic operations still hold with the write-back cache.
			testTruncate(t, subdir(t, mnt, src, "truncate"))
			testLargeFile(t, subdir(t, mnt, src, "large"))
		})
	}
}

// TestFlagSmoke mounts with each remaining flag and runs a few basic
// operations, so no flag breaks the mount.
func TestFlagSmoke(t *testing.T) {
	requireMountEnv(t)
	flagSets := [][]string{
		{"--allow-direct-io"},
		{"--cache=never", "--allow-direct-io"},
		{"--killpriv-v2"},
		{"--preserve-noatime"},
		{"--inode-file-handles=prefer"},
		{"--thread-pool-size", "1"},
		{"--thread-pool-size=8"},
		{"--log-level", "debug"},
		{"--log-level=error"},
		{"--cache=always", "--writeback", "--xattr", "--killpriv-v2", "--no-readdirplus"},
	}
	for _, flags := range flagSets {
		t.Run(strings.Join(flags, " "), func(t *testing.T) {
			src, mnt := startMount(t, flags...)
			d := subdir(t, mnt, src, "s")
			testCreateWriteRead(t, subdir(t, d.mnt, d.src, "cwr"))
			testAppend(t, subdir(t, d.mnt, d.src, "append"))
			testRename(t, subdir(t, d.mnt, d.src, "rename"))
			testParallelWriters(t, subdir(t, d.mnt, d.src, "parallel"))
			got := names(t, d.mnt)
			sort.Strings(got)
			if want := []string{"append", "cwr", "parallel", "rename"}; strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("readdir: got %q, want %q", got, want)
			}
		})
	}
}
