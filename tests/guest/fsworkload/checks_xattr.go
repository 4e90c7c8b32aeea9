package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkXattr sets, gets, lists, replaces and removes user.* extended
// attributes on a file and a directory. With -xattr=false, an ENOTSUP from
// the first set makes it SKIP.
func checkXattr(dir string, o *options) (string, error) {
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		return "", err
	}
	err := unix.Setxattr(f, "user.first", []byte("one"), 0)
	if errors.Is(err, syscall.ENOTSUP) && !o.xattr {
		return "", errSkip{"xattrs are off (setxattr: ENOTSUP)"}
	}
	if err != nil {
		return "", fmt.Errorf("setxattr user.first: %w", err)
	}
	big := pattern26(3000)
	if err := unix.Setxattr(f, "user.second", big, 0); err != nil {
		return "", fmt.Errorf("setxattr user.second (%d bytes): %w", len(big), err)
	}
	if err := wantXattr(f, "user.first", "one"); err != nil {
		return "", err
	}
	if err := wantXattr(f, "user.second", string(big)); err != nil {
		return "", err
	}
	if err := wantXattrList(f, "user.first", "user.second"); err != nil {
		return "", err
	}
	err = unix.Setxattr(f, "user.first", []byte("again"), unix.XATTR_CREATE)
	if err := wantErrno("setxattr XATTR_CREATE of an existing name", err, syscall.EEXIST); err != nil {
		return "", err
	}
	err = unix.Setxattr(f, "user.missing", []byte("x"), unix.XATTR_REPLACE)
	if err := wantErrno("setxattr XATTR_REPLACE of a missing name", err, syscall.ENODATA); err != nil {
		return "", err
	}
	if err := unix.Setxattr(f, "user.first", []byte("uno"), unix.XATTR_REPLACE); err != nil {
		return "", fmt.Errorf("setxattr XATTR_REPLACE: %w", err)
	}
	if err := wantXattr(f, "user.first", "uno"); err != nil {
		return "", err
	}
	if err := unix.Removexattr(f, "user.first"); err != nil {
		return "", fmt.Errorf("removexattr: %w", err)
	}
	_, err = unix.Getxattr(f, "user.first", make([]byte, 16))
	if err := wantErrno("getxattr after removexattr", err, syscall.ENODATA); err != nil {
		return "", err
	}
	if err := wantErrno("removexattr of a missing name", unix.Removexattr(f, "user.first"), syscall.ENODATA); err != nil {
		return "", err
	}
	if err := wantXattrList(f, "user.second"); err != nil {
		return "", err
	}
	// A value larger than the buffer must give ERANGE.
	_, err = unix.Getxattr(f, "user.second", make([]byte, 10))
	if err := wantErrno("getxattr into a short buffer", err, syscall.ERANGE); err != nil {
		return "", err
	}
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", err
	}
	if err := unix.Setxattr(d, "user.dir", []byte("on a directory"), 0); err != nil {
		return "", fmt.Errorf("setxattr on a directory: %w", err)
	}
	return "", wantXattr(d, "user.dir", "on a directory")
}

// wantXattr checks the value of one attribute, asking its size first.
func wantXattr(path, name, want string) error {
	n, err := unix.Getxattr(path, name, nil)
	if err != nil {
		return fmt.Errorf("getxattr %s size: %w", name, err)
	}
	buf := make([]byte, n)
	n, err = unix.Getxattr(path, name, buf)
	if err != nil {
		return fmt.Errorf("getxattr %s: %w", name, err)
	}
	if string(buf[:n]) != want {
		return fmt.Errorf("getxattr %s: got %d bytes %s, want %d bytes %s", name, n, preview(buf[:n]), len(want), preview([]byte(want)))
	}
	return nil
}

// wantXattrList checks the user.* names listxattr returns (other namespaces,
// such as security.*, may appear and are ignored).
func wantXattrList(path string, want ...string) error {
	n, err := unix.Listxattr(path, nil)
	if err != nil {
		return fmt.Errorf("listxattr size: %w", err)
	}
	buf := make([]byte, n)
	n, err = unix.Listxattr(path, buf)
	if err != nil {
		return fmt.Errorf("listxattr: %w", err)
	}
	var got []string
	for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if strings.HasPrefix(name, "user.") {
			got = append(got, name)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("listxattr: got user.* names %q, want %q", got, want)
	}
	return nil
}
