package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkCreateWriteRead creates a file exclusively, writes it, and reads it
// back whole and at an offset.
func checkCreateWriteRead(dir string, _ *options) (string, error) {
	p := filepath.Join(dir, "f")
	data := pattern(1, 64<<10+123)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return "", fmt.Errorf("write: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close after write: %w", err)
	}
	_, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err := wantErrno("second O_EXCL create", err, syscall.EEXIST); err != nil {
		return "", err
	}
	st, err := lstat(p)
	if err != nil {
		return "", err
	}
	if st.Size != int64(len(data)) || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o777 != 0o644 {
		return "", fmt.Errorf("stat: size %d mode %#o, want size %d mode %#o", st.Size, st.Mode, len(data), unix.S_IFREG|0o644)
	}
	if err := wantContent(p, data); err != nil {
		return "", err
	}
	f, err = os.Open(p)
	if err != nil {
		return "", fmt.Errorf("open for pread: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1000)
	if _, err := f.ReadAt(buf, 40000); err != nil {
		return "", fmt.Errorf("pread at 40000: %w", err)
	}
	if string(buf) != string(data[40000:41000]) {
		return "", errors.New("pread at 40000 returned the wrong bytes")
	}
	return fmt.Sprintf("%d bytes", len(data)), nil
}

// checkRename renames within and across directories, over an existing file,
// a directory with contents, and refuses RENAME_NOREPLACE over a file.
func checkRename(dir string, _ *options) (string, error) {
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	if err := os.WriteFile(a, []byte("A"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(a, b); err != nil {
		return "", fmt.Errorf("rename a b: %w", err)
	}
	if _, err := os.Lstat(a); !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("a after rename: got %v, want ENOENT", err)
	}
	if err := wantContent(b, []byte("A")); err != nil {
		return "", err
	}
	// Over an existing file: c is replaced, b disappears.
	if err := os.WriteFile(c, []byte("C"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(b, c); err != nil {
		return "", fmt.Errorf("rename b over c: %w", err)
	}
	if err := wantContent(c, []byte("A")); err != nil {
		return "", err
	}
	if _, err := os.Lstat(b); !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("b after rename over c: got %v, want ENOENT", err)
	}
	// RENAME_NOREPLACE over an existing file must fail and change nothing.
	if err := os.WriteFile(a, []byte("A2"), 0o644); err != nil {
		return "", err
	}
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, c, unix.RENAME_NOREPLACE)
	if err := wantErrno("renameat2 RENAME_NOREPLACE over a file", err, syscall.EEXIST); err != nil {
		return "", err
	}
	if err := wantContent(c, []byte("A")); err != nil {
		return "", err
	}
	// A directory with contents, into another directory.
	d1, d2 := filepath.Join(dir, "d1"), filepath.Join(dir, "d2")
	if err := os.MkdirAll(filepath.Join(d1, "sub"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(d1, "sub", "f"), []byte("deep"), 0o644); err != nil {
		return "", err
	}
	if err := os.Mkdir(d2, 0o755); err != nil {
		return "", err
	}
	moved := filepath.Join(d2, "moved")
	if err := os.Rename(d1, moved); err != nil {
		return "", fmt.Errorf("rename directory across directories: %w", err)
	}
	if err := wantContent(filepath.Join(moved, "sub", "f"), []byte("deep")); err != nil {
		return "", fmt.Errorf("after moving its directory: %w", err)
	}
	// A file across directories.
	if err := os.Rename(a, filepath.Join(moved, "a")); err != nil {
		return "", fmt.Errorf("rename file across directories: %w", err)
	}
	return "", wantContent(filepath.Join(moved, "a"), []byte("A2"))
}

// checkHardlink links a file and checks both names share the inode, the
// link count, and the data.
func checkHardlink(dir string, _ *options) (string, error) {
	f, g := filepath.Join(dir, "f"), filepath.Join(dir, "g")
	if err := os.WriteFile(f, []byte("one"), 0o644); err != nil {
		return "", err
	}
	if err := os.Link(f, g); err != nil {
		return "", fmt.Errorf("link: %w", err)
	}
	sf, err := lstat(f)
	if err != nil {
		return "", err
	}
	sg, err := lstat(g)
	if err != nil {
		return "", err
	}
	if sf.Ino != sg.Ino || sf.Nlink != 2 || sg.Nlink != 2 {
		return "", fmt.Errorf("after link: ino %d/%d nlink %d/%d, want one inode with nlink 2", sf.Ino, sg.Ino, sf.Nlink, sg.Nlink)
	}
	if err := os.WriteFile(g, []byte("two"), 0o644); err != nil {
		return "", fmt.Errorf("write through the link: %w", err)
	}
	if err := wantContent(f, []byte("two")); err != nil {
		return "", fmt.Errorf("write through one name, read through the other: %w", err)
	}
	err = os.Link(f, g)
	if err := wantErrno("link onto an existing name", err, syscall.EEXIST); err != nil {
		return "", err
	}
	if err := os.Remove(f); err != nil {
		return "", fmt.Errorf("unlink the first name: %w", err)
	}
	sg, err = lstat(g)
	if err != nil {
		return "", err
	}
	if sg.Nlink != 1 {
		return "", fmt.Errorf("after unlinking the first name: nlink %d, want 1", sg.Nlink)
	}
	return fmt.Sprintf("ino %d", sf.Ino), wantContent(g, []byte("two"))
}

// checkSymlink creates relative, absolute and dangling symlinks and reads
// them back.
func checkSymlink(dir string, _ *options) (string, error) {
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("through the link"), 0o644); err != nil {
		return "", err
	}
	for _, tc := range []struct{ name, to string }{
		{"rel", "target"},
		{"abs", target},
		{"dangling", "does/not/exist"},
		{"long", string(pattern26(1000))},
	} {
		l := filepath.Join(dir, tc.name)
		if err := os.Symlink(tc.to, l); err != nil {
			return "", fmt.Errorf("symlink %s: %w", tc.name, err)
		}
		got, err := os.Readlink(l)
		if err != nil {
			return "", fmt.Errorf("readlink %s: %w", tc.name, err)
		}
		if got != tc.to {
			return "", fmt.Errorf("readlink %s: got %q, want %q", tc.name, got, tc.to)
		}
		st, err := lstat(l)
		if err != nil {
			return "", err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK || st.Size != int64(len(tc.to)) {
			return "", fmt.Errorf("lstat %s: mode %#o size %d, want a symlink of size %d", tc.name, st.Mode, st.Size, len(tc.to))
		}
	}
	for _, name := range []string{"rel", "abs"} {
		if err := wantContent(filepath.Join(dir, name), []byte("through the link")); err != nil {
			return "", fmt.Errorf("following %s: %w", name, err)
		}
	}
	_, err := os.Stat(filepath.Join(dir, "dangling"))
	return "", wantErrno("stat through a dangling symlink", err, syscall.ENOENT)
}

// pattern26 returns n letters, a symlink target without slashes.
func pattern26(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// checkUnlink removes files, checks the errors for missing names and
// directories, and reads a file through a descriptor opened before unlink.
func checkUnlink(dir string, _ *options) (string, error) {
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("still here"), 0o644); err != nil {
		return "", err
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := unix.Unlink(p); err != nil {
		return "", fmt.Errorf("unlink: %w", err)
	}
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("lstat after unlink: got %v, want ENOENT", err)
	}
	if err := wantErrno("second unlink", unix.Unlink(p), syscall.ENOENT); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, err := f.ReadAt(buf, 0)
	if string(buf[:n]) != "still here" {
		return "", fmt.Errorf("read of the unlinked but open file: got %q (%v), want %q", buf[:n], err, "still here")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", fmt.Errorf("fstat of the unlinked but open file: %w", err)
	}
	if st.Nlink != 0 {
		return "", fmt.Errorf("fstat of the unlinked but open file: nlink %d, want 0", st.Nlink)
	}
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", err
	}
	return "", wantErrno("unlink of a directory", unix.Unlink(d), syscall.EISDIR)
}

// checkMkdirRmdir creates and removes directories, with the errors for
// existing names and non-empty directories.
func checkMkdirRmdir(dir string, _ *options) (string, error) {
	d := filepath.Join(dir, "d")
	if err := unix.Mkdir(d, 0o750); err != nil {
		return "", fmt.Errorf("mkdir: %w", err)
	}
	st, err := lstat(d)
	if err != nil {
		return "", err
	}
	if st.Mode != unix.S_IFDIR|0o750 || st.Nlink != 2 {
		return "", fmt.Errorf("stat of a new directory: mode %#o nlink %d, want %#o nlink 2", st.Mode, st.Nlink, unix.S_IFDIR|0o750)
	}
	if err := wantErrno("second mkdir", unix.Mkdir(d, 0o750), syscall.EEXIST); err != nil {
		return "", err
	}
	if err := unix.Mkdir(filepath.Join(d, "sub"), 0o755); err != nil {
		return "", fmt.Errorf("mkdir sub: %w", err)
	}
	if st, err = lstat(d); err != nil {
		return "", err
	}
	if st.Nlink != 3 {
		return "", fmt.Errorf("nlink of a directory with one subdirectory: %d, want 3", st.Nlink)
	}
	if err := wantErrno("rmdir of a non-empty directory", unix.Rmdir(d), syscall.ENOTEMPTY); err != nil {
		return "", err
	}
	if err := unix.Rmdir(filepath.Join(d, "sub")); err != nil {
		return "", fmt.Errorf("rmdir sub: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d, "f"), nil, 0o644); err != nil {
		return "", err
	}
	if err := wantErrno("rmdir of a directory holding a file", unix.Rmdir(d), syscall.ENOTEMPTY); err != nil {
		return "", err
	}
	if err := wantErrno("rmdir of a file", unix.Rmdir(filepath.Join(d, "f")), syscall.ENOTDIR); err != nil {
		return "", err
	}
	if err := os.Remove(filepath.Join(d, "f")); err != nil {
		return "", err
	}
	if err := unix.Rmdir(d); err != nil {
		return "", fmt.Errorf("rmdir of the emptied directory: %w", err)
	}
	if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("lstat after rmdir: got %v, want ENOENT", err)
	}
	return "", wantErrno("rmdir of a missing directory", unix.Rmdir(d), syscall.ENOENT)
}

// checkChmod changes modes by path and by descriptor, on files and
// directories, including the set-id and sticky bits.
func checkChmod(dir string, _ *options) (string, error) {
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		return "", err
	}
	for _, mode := range []uint32{0o600, 0o755, 0o4755, 0o2750, 0o000, 0o644} {
		if err := unix.Chmod(p, mode); err != nil {
			return "", fmt.Errorf("chmod %#o: %w", mode, err)
		}
		st, err := lstat(p)
		if err != nil {
			return "", err
		}
		if st.Mode != unix.S_IFREG|mode {
			return "", fmt.Errorf("after chmod %#o: mode %#o", mode, st.Mode)
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := unix.Fchmod(int(f.Fd()), 0o640); err != nil {
		return "", fmt.Errorf("fchmod: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", fmt.Errorf("fstat: %w", err)
	}
	if st.Mode != unix.S_IFREG|0o640 {
		return "", fmt.Errorf("after fchmod 0640: mode %#o", st.Mode)
	}
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", err
	}
	if err := unix.Chmod(d, 0o1777); err != nil {
		return "", fmt.Errorf("chmod directory 01777: %w", err)
	}
	if st, err = lstat(d); err != nil {
		return "", err
	}
	if st.Mode != unix.S_IFDIR|0o1777 {
		return "", fmt.Errorf("directory after chmod 01777: mode %#o", st.Mode)
	}
	return "", nil
}

// checkTruncate grows and shrinks a file by path and by descriptor and
// checks size and content after each step.
func checkTruncate(dir string, _ *options) (string, error) {
	p := filepath.Join(dir, "f")
	data := pattern(2, 1000)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return "", err
	}
	const grown = 1 << 20
	if err := os.Truncate(p, grown); err != nil {
		return "", fmt.Errorf("truncate to grow: %w", err)
	}
	want := append(append([]byte{}, data...), make([]byte, grown-len(data))...)
	if err := wantContent(p, want); err != nil {
		return "", fmt.Errorf("after growing (want the data then zeros): %w", err)
	}
	if err := os.Truncate(p, 10); err != nil {
		return "", fmt.Errorf("truncate to shrink: %w", err)
	}
	if err := wantContent(p, data[:10]); err != nil {
		return "", fmt.Errorf("after shrinking: %w", err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Truncate(0); err != nil {
		return "", fmt.Errorf("ftruncate to 0: %w", err)
	}
	if _, err := f.WriteAt([]byte("z"), 4095); err != nil {
		return "", fmt.Errorf("write past the end: %w", err)
	}
	want = append(make([]byte, 4095), 'z')
	if err := wantContent(p, want); err != nil {
		return "", fmt.Errorf("after ftruncate 0 and a write at 4095: %w", err)
	}
	err = os.Truncate(filepath.Join(dir, "missing"), 0)
	return "", wantErrno("truncate of a missing file", err, syscall.ENOENT)
}
