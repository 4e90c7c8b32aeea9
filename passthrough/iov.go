package passthrough

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// iovMax is IOV_MAX: the most buffers one preadv or pwritev takes. A guest
// may scatter one READ or WRITE over many more (an indirect table holds up
// to 32768), so longer lists go in several calls.
const iovMax = 1024

// iovecs holds the struct iovec arrays of transfers in progress. x/sys's
// Preadv and Pwritev2 build a new one per call, which for a guest's 1 MiB
// write in pages is 9 KiB in 5 allocations per request.
var iovecs = sync.Pool{New: func() any {
	s := make([]unix.Iovec, 0, iovMax)
	return &s
}}

// preadvFull reads into bufs at off, in as many calls as the list needs,
// and stops at the first short read (end of file).
func preadvFull(fd int, bufs [][]byte, off int64) (int, error) {
	return vectored(unix.SYS_PREADV2, fd, bufs, off, 0)
}

// pwritevFull writes bufs at off (or at the end, with RWF_APPEND) likewise.
func pwritevFull(fd int, bufs [][]byte, off int64, flags int) (int, error) {
	return vectored(unix.SYS_PWRITEV2, fd, bufs, off, flags)
}

// vectored runs preadv2 or pwritev2 (sysno) over bufs in chunks of at most
// iovMax buffers. An error after some bytes moved reports those bytes, as
// a short transfer.
func vectored(sysno uintptr, fd int, bufs [][]byte, off int64, flags int) (int, error) {
	p := iovecs.Get().(*[]unix.Iovec)
	defer iovecs.Put(p)
	total := 0
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), iovMax)]
		iov := (*p)[:0]
		want := 0
		for _, b := range chunk {
			v := unix.Iovec{}
			if len(b) > 0 {
				v.Base = &b[0]
				v.SetLen(len(b))
			}
			iov = append(iov, v)
			want += len(b)
		}
		n, err := preadwritev(sysno, fd, iov, off, flags)
		clear(iov) // no stale pointers into guest memory, which may be unmapped
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if total > 0 {
				return total, nil
			}
			return 0, err
		}
		total += n
		off += int64(n)
		if n < want {
			return total, nil
		}
		bufs = bufs[len(chunk):]
	}
	return total, nil
}

// preadwritev is one preadv2 or pwritev2 call, made raw like the rest of
// the request path (see internal/rawsys, and its UseOrdinaryCalls). The offset goes in two words as
// the system call takes it (the high one is 0 on 64-bit).
func preadwritev(sysno uintptr, fd int, iov []unix.Iovec, off int64, flags int) (int, error) {
	var base unsafe.Pointer
	if len(iov) > 0 {
		base = unsafe.Pointer(&iov[0])
	}
	lo, hi := uintptr(off), uintptr(uint64(off)>>(unsafe.Sizeof(uintptr(0))*8-1)>>1)
	n, _, errno := rawsys.Syscall6(sysno, uintptr(fd), uintptr(base), uintptr(len(iov)), lo, hi, uintptr(flags))
	if errno != 0 {
		return int(n), errno
	}
	return int(n), nil
}
