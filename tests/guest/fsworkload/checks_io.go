package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// checkAppend writes through two O_APPEND descriptors in turn, and after a
// seek to 0, and expects every write at the end of the file.
func checkAppend(dir string, _ *options) (string, error) {
	p := filepath.Join(dir, "log")
	if err := os.WriteFile(p, []byte("start\n"), 0o644); err != nil {
		return "", err
	}
	a, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", err
	}
	defer a.Close()
	b, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", err
	}
	defer b.Close()
	want := "start\n"
	for i := range 20 {
		f, line := a, fmt.Sprintf("a%d\n", i)
		if i%2 == 1 {
			f, line = b, fmt.Sprintf("b%d\n", i)
		}
		if _, err := f.WriteString(line); err != nil {
			return "", fmt.Errorf("append %d: %w", i, err)
		}
		want += line
	}
	if _, err := a.Seek(0, 0); err != nil {
		return "", fmt.Errorf("seek: %w", err)
	}
	if _, err := a.WriteString("end\n"); err != nil {
		return "", fmt.Errorf("append after seek to 0: %w", err)
	}
	want += "end\n"
	return "", wantContent(p, []byte(want))
}

// checkFsync calls fsync and fdatasync on a written file and fsync on its
// directory, and reads the data back.
func checkFsync(dir string, _ *options) (string, error) {
	p := filepath.Join(dir, "f")
	data := pattern(4, 256<<10)
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("write: %w", err)
	}
	if err := unix.Fsync(int(f.Fd())); err != nil {
		return "", fmt.Errorf("fsync: %w", err)
	}
	if _, err := f.WriteAt([]byte("changed"), 100); err != nil {
		return "", fmt.Errorf("rewrite: %w", err)
	}
	copy(data[100:], "changed")
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return "", fmt.Errorf("fdatasync: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer d.Close()
	if err := unix.Fsync(int(d.Fd())); err != nil {
		return "", fmt.Errorf("fsync of the directory: %w", err)
	}
	return "", wantContent(p, data)
}

// fuseSuperMagic is the f_type of every FUSE file system, virtio-fs
// included.
const fuseSuperMagic = 0x65735546

// checkStatfs checks that statfs of the mount describes the expected kind
// of file system (by default FUSE) with consistent block counts.
func checkStatfs(dir string, o *options) (string, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		return "", fmt.Errorf("statfs: %w", err)
	}
	var problems []string
	if o.statfsType != 0 && s.Type != o.statfsType {
		problems = append(problems, fmt.Sprintf("f_type %#x, want %#x", s.Type, o.statfsType))
	}
	if s.Bsize <= 0 || s.Blocks == 0 {
		problems = append(problems, fmt.Sprintf("f_bsize %d f_blocks %d, want both positive", s.Bsize, s.Blocks))
	}
	if s.Bavail > s.Bfree || s.Bfree > s.Blocks {
		problems = append(problems, fmt.Sprintf("want f_bavail %d <= f_bfree %d <= f_blocks %d", s.Bavail, s.Bfree, s.Blocks))
	}
	if s.Ffree > s.Files {
		problems = append(problems, fmt.Sprintf("f_ffree %d > f_files %d", s.Ffree, s.Files))
	}
	if s.Namelen < 255 {
		problems = append(problems, fmt.Sprintf("f_namelen %d, want at least 255", s.Namelen))
	}
	var f unix.Statfs_t
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		return "", err
	}
	if err := unix.Statfs(file, &f); err != nil {
		return "", fmt.Errorf("statfs of a file: %w", err)
	}
	if f.Type != s.Type || f.Blocks != s.Blocks || f.Bsize != s.Bsize {
		problems = append(problems, "statfs of a file differs from statfs of its directory")
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return fmt.Sprintf("bsize %d blocks %d bfree %d files %d namelen %d", s.Bsize, s.Blocks, s.Bfree, s.Files, s.Namelen), nil
}
