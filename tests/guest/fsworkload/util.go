package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// checks lists every check in the order they run. Each lives in the file
// named after its family.
var checks = []check{
	{"create-write-read", checkCreateWriteRead},
	{"rename", checkRename},
	{"hardlink", checkHardlink},
	{"symlink", checkSymlink},
	{"unlink", checkUnlink},
	{"mkdir-rmdir", checkMkdirRmdir},
	{"readdir-5000", checkReaddir5000},
	{"chmod", checkChmod},
	{"truncate", checkTruncate},
	{"xattr", checkXattr},
	{"large-file", checkLargeFile},
	{"small-files-3000", checkSmallFiles},
	{"parallel-4", checkParallel},
	{"append", checkAppend},
	{"fsync", checkFsync},
	{"statfs", checkStatfs},
}

// wantErrno returns nil if err is the errno want, else an error describing
// what happened instead.
func wantErrno(what string, err error, want syscall.Errno) error {
	if errors.Is(err, want) {
		return nil
	}
	if err == nil {
		return fmt.Errorf("%s: succeeded, want %s", what, unix.ErrnoName(want))
	}
	return fmt.Errorf("%s: got %v, want %s", what, err, unix.ErrnoName(want))
}

// wantContent returns nil if path holds exactly want.
func wantContent(path string, want []byte) error {
	got, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s: content differs: got %d bytes %s, want %d bytes %s",
			path, len(got), preview(got), len(want), preview(want))
	}
	return nil
}

// preview returns the start of b for an error message.
func preview(b []byte) string {
	if len(b) > 16 {
		return fmt.Sprintf("%q...", b[:16])
	}
	return fmt.Sprintf("%q", b)
}

// lstat returns the stat of path without following a final symlink.
func lstat(path string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return st, fmt.Errorf("lstat %s: %w", path, err)
	}
	return st, nil
}

// pattern returns n bytes that differ with seed and position, so a read
// from the wrong offset or file shows.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// errNoDrop is dropCaches's answer under -drop-caches=false.
var errNoDrop = errors.New("-drop-caches=false")

// dropCaches writes back dirty data and empties the guest's page cache, so
// that the reads that follow reach the daemon rather than guest memory. It
// needs root and /proc; the error says why it could not.
func dropCaches(o *options) error {
	if !o.dropCaches {
		return errNoDrop
	}
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}
