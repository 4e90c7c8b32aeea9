package rawsys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCallsMatchXSys runs every call next to its golang.org/x/sys
// counterpart on the same objects and compares results and errors.
func TestCallsMatchXSys(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirFD, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirFD)

	for _, tc := range []struct {
		name  string
		path  string
		flags int
	}{
		{"file", "file", unix.O_RDONLY | unix.O_CLOEXEC},
		{"path-only", "file", unix.O_PATH | unix.O_CLOEXEC},
		{"missing", "missing", unix.O_RDONLY | unix.O_CLOEXEC},
		{"not-a-dir", "file/x", unix.O_RDONLY | unix.O_CLOEXEC},
		{"create", "new", unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY | unix.O_CLOEXEC},
	} {
		t.Run("openat/"+tc.name, func(t *testing.T) {
			fd, err := Openat(dirFD, tc.path, tc.flags, 0o600)
			if fd >= 0 {
				Close(fd)
				if tc.flags&unix.O_CREAT != 0 {
					unix.Unlinkat(dirFD, tc.path, 0)
				}
			}
			wantFD, wantErr := unix.Openat(dirFD, tc.path, tc.flags, 0o600)
			if wantFD >= 0 {
				unix.Close(wantFD)
				if tc.flags&unix.O_CREAT != 0 {
					unix.Unlinkat(dirFD, tc.path, 0)
				}
			}
			if (fd >= 0) != (wantFD >= 0) || !errors.Is(err, errnoOf(wantErr)) {
				t.Errorf("Openat = %d, %v; x/sys: %d, %v", fd, err, wantFD, wantErr)
			}
			how := unix.OpenHow{Flags: uint64(tc.flags &^ unix.O_CREAT &^ unix.O_EXCL), Resolve: unix.RESOLVE_BENEATH}
			fd2, err2 := Openat2(dirFD, tc.path, &how)
			if fd2 >= 0 {
				Close(fd2)
			}
			wantFD2, wantErr2 := unix.Openat2(dirFD, tc.path, &how)
			if wantFD2 >= 0 {
				unix.Close(wantFD2)
			}
			if (fd2 >= 0) != (wantFD2 >= 0) || !errors.Is(err2, errnoOf(wantErr2)) {
				t.Errorf("Openat2 = %d, %v; x/sys: %d, %v", fd2, err2, wantFD2, wantErr2)
			}
		})
	}

	t.Run("openat2-escape", func(t *testing.T) {
		how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH}
		if fd, err := Openat2(dirFD, "../..", &how); !errors.Is(err, unix.EXDEV) {
			if fd >= 0 {
				Close(fd)
			}
			t.Errorf("Openat2(../..) = %d, %v, want EXDEV", fd, err)
		}
	})

	t.Run("statx", func(t *testing.T) {
		for _, path := range []string{"file", "", "missing"} {
			var got, want unix.Statx_t
			flags := unix.AT_SYMLINK_NOFOLLOW
			if path == "" {
				flags |= unix.AT_EMPTY_PATH
			}
			err := Statx(dirFD, path, flags, unix.STATX_BASIC_STATS|unix.STATX_MNT_ID, &got)
			wantErr := unix.Statx(dirFD, path, flags, unix.STATX_BASIC_STATS|unix.STATX_MNT_ID, &want)
			if !errors.Is(err, errnoOf(wantErr)) || (err == nil && (got.Ino != want.Ino || got.Size != want.Size || got.Mnt_id != want.Mnt_id)) {
				t.Errorf("Statx(%q) = %+v, %v; x/sys: %+v, %v", path, got, err, want, wantErr)
			}
		}
	})

	t.Run("unlinkat", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, "gone"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Unlinkat(dirFD, "gone", 0); err != nil {
			t.Fatalf("Unlinkat: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "gone")); !os.IsNotExist(err) {
			t.Fatalf("after Unlinkat: %v", err)
		}
		if err := Unlinkat(dirFD, "gone", 0); !errors.Is(err, unix.ENOENT) {
			t.Errorf("Unlinkat of a missing name: %v, want ENOENT", err)
		}
		if err := Unlinkat(dirFD, "bad\x00name", 0); !errors.Is(err, unix.EINVAL) {
			t.Errorf("Unlinkat of a name with NUL: %v, want EINVAL", err)
		}
	})

	t.Run("dup-close", func(t *testing.T) {
		fd, err := DupCloexec(dirFD)
		if err != nil {
			t.Fatal(err)
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("duplicate's flags %#x, %v: want FD_CLOEXEC", flags, err)
		}
		if err := Close(fd); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := Close(fd); !errors.Is(err, unix.EBADF) {
			t.Errorf("second Close: %v, want EBADF", err)
		}
		if _, err := DupCloexec(-1); !errors.Is(err, unix.EBADF) {
			t.Errorf("DupCloexec(-1): %v, want EBADF", err)
		}
	})

	t.Run("handles", func(t *testing.T) {
		typ, h, mnt, err := NameToHandleAt(dirFD, "file", 0)
		if errors.Is(err, unix.EOPNOTSUPP) {
			t.Skip("the temporary directory's file system has no file handles")
		}
		if err != nil {
			t.Fatal(err)
		}
		want, wantMnt, err := unix.NameToHandleAt(dirFD, "file", 0)
		if err != nil {
			t.Fatal(err)
		}
		if typ != want.Type() || !bytes.Equal(h, want.Bytes()) || mnt != wantMnt {
			t.Fatalf("NameToHandleAt = %d %x %d; x/sys: %d %x %d", typ, h, mnt, want.Type(), want.Bytes(), wantMnt)
		}
		if _, _, _, err := NameToHandleAt(dirFD, "missing", 0); !errors.Is(err, unix.ENOENT) {
			t.Errorf("NameToHandleAt(missing): %v, want ENOENT", err)
		}
		// The mount descriptor must be a real open, not O_PATH.
		mountFD, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(mountFD)
		fd, err := OpenByHandleAt(mountFD, typ, h, unix.O_RDONLY|unix.O_CLOEXEC)
		if errors.Is(err, unix.EPERM) {
			t.Skip("open_by_handle_at needs CAP_DAC_READ_SEARCH")
		}
		if err != nil {
			t.Fatal(err)
		}
		defer Close(fd)
		buf := make([]byte, 16)
		if n, err := unix.Read(fd, buf); err != nil || string(buf[:n]) != "content" {
			t.Errorf("read through the handle: %q, %v", buf[:n], err)
		}
		if _, err := OpenByHandleAt(mountFD, typ, make([]byte, maxHandleSize+1), unix.O_RDONLY); !errors.Is(err, unix.EINVAL) {
			t.Errorf("OpenByHandleAt of an oversized handle: %v, want EINVAL", err)
		}
	})

	t.Run("epoll-ctl", func(t *testing.T) {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(ep)
		efd, err := unix.Eventfd(1, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(efd)
		if err := EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, unix.EPOLLIN); err != nil {
			t.Fatal(err)
		}
		events := make([]unix.EpollEvent, 2)
		if n, err := unix.EpollWait(ep, events, 0); n != 1 || err != nil || events[0].Fd != int32(efd) {
			t.Errorf("EpollWait = %d, %v, %+v: want the eventfd", n, err, events[:max(n, 0)])
		}
		if err := EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, unix.EPOLLIN); !errors.Is(err, unix.EEXIST) {
			t.Errorf("second ADD: %v, want EEXIST", err)
		}
		if err := EpollCtl(ep, unix.EPOLL_CTL_DEL, efd, 0); err != nil {
			t.Errorf("DEL: %v", err)
		}
	})
}

// errnoOf returns err's errno, or nil.
func errnoOf(err error) error {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// TestAddProcs checks that AddProcs moves GOMAXPROCS and gives it back.
func TestAddProcs(t *testing.T) {
	before := runtimeProcs()
	AddProcs(3)
	if got := runtimeProcs(); got != before+3 {
		t.Errorf("GOMAXPROCS %d after AddProcs(3), want %d", got, before+3)
	}
	AddProcs(-3)
	if got := runtimeProcs(); got != before {
		t.Errorf("GOMAXPROCS %d after AddProcs(-3), want %d", got, before)
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
