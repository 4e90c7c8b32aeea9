package rawsys

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ordinary makes every call of this package an ordinary system call.
var ordinary atomic.Bool

// UseOrdinaryCalls makes every call of this package, from now on, an
// ordinary system call, for a daemon that serves a file system whose calls
// may block without bound: NFS, FUSE, SMB and the like, whose server may
// hang. A raw call keeps its goroutine's P, and the next stop-the-world
// (the garbage collector's) waits for every P: one raw read from a hung
// server would stop every goroutine of the daemon, the vhost-user message
// loop and the other rings included, until the server answers. An ordinary
// call hands its P on, and only the request that waits stops. The price is
// the scheduler's cost per call that this package exists to avoid.
func UseOrdinaryCalls() { ordinary.Store(true) }

// OrdinaryCalls reports whether UseOrdinaryCalls was called.
func OrdinaryCalls() bool { return ordinary.Load() }

// Syscall6 is a system call on a file that is raw unless UseOrdinaryCalls
// was called, for the few calls the request path makes outside this
// package.
func Syscall6(trap, a1, a2, a3, a4, a5, a6 uintptr) (r1, r2 uintptr, err unix.Errno) {
	return syscall6(trap, a1, a2, a3, a4, a5, a6)
}

func syscall6(trap, a1, a2, a3, a4, a5, a6 uintptr) (r1, r2 uintptr, err unix.Errno) {
	if ordinary.Load() {
		return unix.Syscall6(trap, a1, a2, a3, a4, a5, a6)
	}
	return unix.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
}

func syscall3(trap, a1, a2, a3 uintptr) (r1, r2 uintptr, err unix.Errno) {
	if ordinary.Load() {
		return unix.Syscall(trap, a1, a2, a3)
	}
	return unix.RawSyscall(trap, a1, a2, a3)
}
