package rawsys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The calls below are the x/sys calls of the same names, made raw.

// bufPtr returns the address of b's first byte, or nil for an empty b.
func bufPtr(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// Mkdirat is unix.Mkdirat.
func Mkdirat(dirfd int, path string, mode uint32) error {
	p, err := pathPtr(path)
	if err != nil {
		return err
	}
	_, _, e := syscall3(unix.SYS_MKDIRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(mode))
	return errnoErr(e)
}

// Mknodat is unix.Mknodat.
func Mknodat(dirfd int, path string, mode uint32, dev int) error {
	p, err := pathPtr(path)
	if err != nil {
		return err
	}
	_, _, e := syscall6(unix.SYS_MKNODAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(mode), uintptr(dev), 0, 0)
	return errnoErr(e)
}

// Symlinkat is unix.Symlinkat.
func Symlinkat(target string, dirfd int, path string) error {
	t, err := pathPtr(target)
	if err != nil {
		return err
	}
	p, err := pathPtr(path)
	if err != nil {
		return err
	}
	_, _, e := syscall3(unix.SYS_SYMLINKAT, uintptr(unsafe.Pointer(t)), uintptr(dirfd), uintptr(unsafe.Pointer(p)))
	return errnoErr(e)
}

// Renameat2 is unix.Renameat2.
func Renameat2(olddirfd int, oldpath string, newdirfd int, newpath string, flags uint) error {
	o, err := pathPtr(oldpath)
	if err != nil {
		return err
	}
	n, err := pathPtr(newpath)
	if err != nil {
		return err
	}
	_, _, e := syscall6(unix.SYS_RENAMEAT2, uintptr(olddirfd), uintptr(unsafe.Pointer(o)), uintptr(newdirfd), uintptr(unsafe.Pointer(n)), uintptr(flags), 0)
	return errnoErr(e)
}

// Linkat is unix.Linkat.
func Linkat(olddirfd int, oldpath string, newdirfd int, newpath string, flags int) error {
	o, err := pathPtr(oldpath)
	if err != nil {
		return err
	}
	n, err := pathPtr(newpath)
	if err != nil {
		return err
	}
	_, _, e := syscall6(unix.SYS_LINKAT, uintptr(olddirfd), uintptr(unsafe.Pointer(o)), uintptr(newdirfd), uintptr(unsafe.Pointer(n)), uintptr(flags), 0)
	return errnoErr(e)
}

// Fchmodat is unix.Fchmodat with flags 0, the only form the kernel's
// fchmodat takes.
func Fchmodat(dirfd int, path string, mode uint32) error {
	p, err := pathPtr(path)
	if err != nil {
		return err
	}
	_, _, e := syscall3(unix.SYS_FCHMODAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(mode))
	return errnoErr(e)
}

// Fchownat is unix.Fchownat.
func Fchownat(dirfd int, path string, uid, gid int, flags int) error {
	p, err := pathPtr(path)
	if err != nil {
		return err
	}
	_, _, e := syscall6(unix.SYS_FCHOWNAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(uid), uintptr(gid), uintptr(flags), 0)
	return errnoErr(e)
}

// UtimesNanoAt is unix.UtimesNanoAt.
func UtimesNanoAt(dirfd int, path string, ts []unix.Timespec, flags int) error {
	if len(ts) != 2 {
		return unix.EINVAL
	}
	p, err := pathPtr(path)
	if err != nil {
		return err
	}
	_, _, e := syscall6(unix.SYS_UTIMENSAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&ts[0])), uintptr(flags), 0, 0)
	return errnoErr(e)
}

// Readlinkat is unix.Readlinkat.
func Readlinkat(dirfd int, path string, buf []byte) (int, error) {
	p, err := pathPtr(path)
	if err != nil {
		return 0, err
	}
	r, _, e := syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), bufPtr(buf), uintptr(len(buf)), 0, 0)
	return countResult(r, e)
}

// Getdents is unix.Getdents (getdents64).
func Getdents(fd int, buf []byte) (int, error) {
	r, _, e := syscall3(unix.SYS_GETDENTS64, uintptr(fd), bufPtr(buf), uintptr(len(buf)))
	return countResult(r, e)
}

// Seek is unix.Seek.
func Seek(fd int, offset int64, whence int) (int64, error) {
	off, _, e := syscall3(unix.SYS_LSEEK, uintptr(fd), uintptr(offset), uintptr(whence))
	if e != 0 {
		return -1, e
	}
	return int64(off), nil
}

// Ftruncate is unix.Ftruncate.
func Ftruncate(fd int, length int64) error {
	_, _, e := syscall3(unix.SYS_FTRUNCATE, uintptr(fd), uintptr(length), 0)
	return errnoErr(e)
}

// Fgetxattr is unix.Fgetxattr.
func Fgetxattr(fd int, attr string, dest []byte) (int, error) {
	a, err := pathPtr(attr)
	if err != nil {
		return 0, err
	}
	r, _, e := syscall6(unix.SYS_FGETXATTR, uintptr(fd), uintptr(unsafe.Pointer(a)), bufPtr(dest), uintptr(len(dest)), 0, 0)
	return countResult(r, e)
}

// Flistxattr is unix.Flistxattr.
func Flistxattr(fd int, dest []byte) (int, error) {
	r, _, e := syscall3(unix.SYS_FLISTXATTR, uintptr(fd), bufPtr(dest), uintptr(len(dest)))
	return countResult(r, e)
}

// Fsetxattr is unix.Fsetxattr.
func Fsetxattr(fd int, attr string, data []byte, flags int) error {
	a, err := pathPtr(attr)
	if err != nil {
		return err
	}
	_, _, e := syscall6(unix.SYS_FSETXATTR, uintptr(fd), uintptr(unsafe.Pointer(a)), bufPtr(data), uintptr(len(data)), uintptr(flags), 0)
	return errnoErr(e)
}

// Fremovexattr is unix.Fremovexattr.
func Fremovexattr(fd int, attr string) error {
	a, err := pathPtr(attr)
	if err != nil {
		return err
	}
	_, _, e := syscall3(unix.SYS_FREMOVEXATTR, uintptr(fd), uintptr(unsafe.Pointer(a)), 0)
	return errnoErr(e)
}
