package tests

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// asFSUser runs fn on a thread whose fsuid and fsgid are uid and gid, the
// identity the kernel puts in the FUSE requests fn causes.
func asFSUser(t *testing.T, uid, gid int, fn func() error) error {
	t.Helper()
	runtime.LockOSThread()
	// setfsuid and setfsgid change only this thread; they report the old
	// id, not errors, so the identity is read back.
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(gid), 0, 0)
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(uid), 0, 0)
	if now, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); int(now) != uid {
		t.Fatalf("setfsuid %d did not take", uid)
	}
	err := fn()
	unix.RawSyscall(unix.SYS_SETFSUID, 0, 0, 0)
	unix.RawSyscall(unix.SYS_SETFSGID, 0, 0, 0)
	if now, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); now != 0 {
		t.Fatal("could not restore fsuid 0: the thread stays locked")
	}
	runtime.UnlockOSThread()
	return err
}

// TestAttributesCheckedAsCaller: through a real mount, opening a file and
// changing its attributes follow a local file system's rules for the
// calling user: someone who does not own a file may not set its times or
// mode, nor touch, truncate or open it for writing without write
// permission, nor read what it may not read; the owner may. (The daemon
// opens files as itself: the mount's default_permissions, which a guest's
// virtio-fs mount always has, makes the kernel check access; attribute
// changes are checked again by the daemon, as the caller.)
func TestAttributesCheckedAsCaller(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as other users")
	}
	src, mnt := startMount(t)
	// The other users walk to the mount point.
	for d := mnt; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	const owner, other = 1000, 2000
	path := filepath.Join(mnt, "f")
	mustWrite(t, path, []byte("content"), 0o644)
	if err := os.Chown(filepath.Join(src, "f"), owner, owner); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(src, "f"), 0o644)
	mustWrite(t, filepath.Join(mnt, "private"), []byte("secret"), 0o600)
	times := []unix.Timespec{{Sec: 1e9}, {Sec: 1e9}}
	open := func(p string, flags int) func() error {
		return func() error {
			fd, err := unix.Open(p, flags, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}
	}
	tests := []struct {
		name string
		uid  int
		op   func() error
		want syscall.Errno
	}{
		{"other sets explicit times", other, func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, path, times, 0) }, syscall.EPERM},
		{"other touches", other, func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, path, nil, 0) }, syscall.EACCES},
		{"other changes the mode", other, func() error { return unix.Chmod(path, 0o666) }, syscall.EPERM},
		{"other truncates", other, func() error { return unix.Truncate(path, 0) }, syscall.EACCES},
		{"other gives the file to itself", other, func() error { return unix.Chown(path, other, other) }, syscall.EPERM},
		{"other opens a file it may not write for writing", other, open(path, unix.O_WRONLY), syscall.EACCES},
		{"other reads root's private file", other, open(filepath.Join(mnt, "private"), unix.O_RDONLY), syscall.EACCES},
		{"other reads a readable file", other, open(path, unix.O_RDONLY), 0},
		{"owner sets explicit times", owner, func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, path, times, 0) }, 0},
		{"owner touches", owner, func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, path, nil, 0) }, 0},
		{"owner changes the mode", owner, func() error { return unix.Chmod(path, 0o640) }, 0},
	}
	for _, tt := range tests {
		err := asFSUser(t, tt.uid, tt.uid, tt.op)
		var got syscall.Errno
		if err != nil && !errorsAs(err, &got) {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	st := mustLstat(t, filepath.Join(src, "f"))
	if st.Size != 7 || st.Uid != owner || st.Mode&0o777 != 0o640 || st.Mtim.Sec == 1e9 {
		t.Errorf("host file after the refused changes: size %d uid %d mode %o mtime %d", st.Size, st.Uid, st.Mode&0o777, st.Mtim.Sec)
	}
}

func errorsAs(err error, errno *syscall.Errno) bool {
	e, ok := err.(syscall.Errno)
	*errno = e
	return ok
}
