// Package rawsys makes the system calls of the request path without telling
// the Go scheduler.
//
// An ordinary system call (golang.org/x/sys/unix, package syscall) enters
// and leaves the runtime's syscall state. Entering it wakes the runtime's
// monitor thread (sysmon) from its deep sleep, and sysmon may take the P of
// a goroutine it finds in a system call; after either it polls every 20µs
// for a millisecond, about 60 wake-ups, before it backs off to one every
// 10ms. On the hosts we measured on a wake-up costs tens of microseconds,
// and a daemon serving one request at a time went through this all the
// time. The calls here go straight to the kernel: a server that makes only
// these while serving, and gives its P back while idle, leaves sysmon in its
// deep sleep (see the vhost-user kick poller).
//
// The price: while a raw call runs, its goroutine keeps its P, and a
// stop-the-world (the garbage collector's, rare on this path, which hardly
// allocates) waits for it to return. So only calls that return promptly
// belong here (opening, closing, stat, handles, directory entries, xattrs,
// reads and writes of files); calls that may block for long (fsync, locks,
// fallocate, copy_file_range) stay ordinary. Even these may block without
// bound on a file system a server elsewhere answers (NFS, FUSE): a daemon
// that serves one turns every call here into an ordinary one
// (UseOrdinaryCalls). A server adds a P for each goroutine that makes raw
// calls (AddProcs).
package rawsys

import (
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errnoErr returns nil for 0 and the errno otherwise; an Errno below 256
// converts to an error without allocating.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// fdResult is the result of a call that returns a new descriptor.
func fdResult(r uintptr, e unix.Errno) (int, error) {
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// countResult is the result of a call that returns a byte count.
func countResult(r uintptr, e unix.Errno) (int, error) {
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// empty is the path of an *at call with AT_EMPTY_PATH.
var empty = [1]byte{0}

func pathPtr(path string) (*byte, error) {
	if path == "" {
		return &empty[0], nil
	}
	return unix.BytePtrFromString(path)
}

// Close closes fd.
func Close(fd int) error {
	_, _, e := syscall3(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	return errnoErr(e)
}

// Openat is unix.Openat.
func Openat(dirfd int, path string, flags int, mode uint32) (int, error) {
	p, err := pathPtr(path)
	if err != nil {
		return -1, err
	}
	r, _, e := syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags|unix.O_LARGEFILE), uintptr(mode), 0, 0)
	return fdResult(r, e)
}

// Openat2 is unix.Openat2.
func Openat2(dirfd int, path string, how *unix.OpenHow) (int, error) {
	p, err := pathPtr(path)
	if err != nil {
		return -1, err
	}
	r, _, e := syscall6(unix.SYS_OPENAT2, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(how)), unsafe.Sizeof(*how), 0, 0)
	return fdResult(r, e)
}

// Statx is unix.Statx.
func Statx(dirfd int, path string, flags int, mask int, stx *unix.Statx_t) error {
	p, err := pathPtr(path)
	if err != nil {
		return err
	}
	_, _, e := syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags), uintptr(mask), uintptr(unsafe.Pointer(stx)), 0)
	return errnoErr(e)
}

// Unlinkat is unix.Unlinkat.
func Unlinkat(dirfd int, path string, flags int) error {
	p, err := pathPtr(path)
	if err != nil {
		return err
	}
	_, _, e := syscall3(unix.SYS_UNLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags))
	return errnoErr(e)
}

// DupCloexec duplicates fd with FD_CLOEXEC set on the copy.
func DupCloexec(fd int) (int, error) {
	r, _, e := syscall3(unix.SYS_FCNTL, uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	return fdResult(r, e)
}

// maxHandleSize is MAX_HANDLE_SZ, the largest handle the kernel makes.
const maxHandleSize = 128

// fileHandle is the kernel's struct file_handle with room for the largest
// handle.
type fileHandle struct {
	size uint32
	typ  int32
	data [maxHandleSize]byte
}

// NameToHandleAt is name_to_handle_at(2): the handle's type and bytes and
// the mount id of the object at dirfd and path.
func NameToHandleAt(dirfd int, path string, flags int) (typ int32, handle []byte, mountID int, err error) {
	p, err := pathPtr(path)
	if err != nil {
		return 0, nil, 0, err
	}
	buf := fileHandle{size: maxHandleSize}
	var mnt int32
	_, _, e := syscall6(unix.SYS_NAME_TO_HANDLE_AT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&buf)), uintptr(unsafe.Pointer(&mnt)), uintptr(flags), 0)
	if e != 0 {
		return 0, nil, 0, e
	}
	if buf.size > maxHandleSize {
		return 0, nil, 0, unix.EOVERFLOW
	}
	return buf.typ, append([]byte(nil), buf.data[:buf.size]...), int(mnt), nil
}

// OpenByHandleAt is open_by_handle_at(2) of the handle typ, handle on the
// mount of mountFD.
func OpenByHandleAt(mountFD int, typ int32, handle []byte, flags int) (int, error) {
	if len(handle) > maxHandleSize {
		return -1, unix.EINVAL
	}
	buf := fileHandle{typ: typ}
	buf.size = uint32(copy(buf.data[:], handle))
	r, _, e := syscall3(unix.SYS_OPEN_BY_HANDLE_AT, uintptr(mountFD), uintptr(unsafe.Pointer(&buf)), uintptr(flags))
	return fdResult(r, e)
}

// EpollCtl is epoll_ctl(2) with the event's data set to fd.
func EpollCtl(epfd, op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	return errnoErr(e)
}

// procsMu serializes AddProcs: tests run several servers in one process.
var procsMu sync.Mutex

// AddProcs changes GOMAXPROCS by delta. A server adds one for every
// goroutine that makes raw calls concurrently (a queue poller, a worker) and
// takes it back when the goroutine ends: a raw call that blocks keeps its
// P, where an ordinary one would let the runtime hand the P to another
// goroutine, so each such goroutine gets a P of its own, the way each of
// virtiofsd's pool threads is a thread of its own.
func AddProcs(delta int) {
	procsMu.Lock()
	runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)+delta))
	procsMu.Unlock()
}
