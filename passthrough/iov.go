package passthrough

import "golang.org/x/sys/unix"

// iovMax is IOV_MAX: the most buffers one preadv or pwritev takes. A guest
// may scatter one READ or WRITE over many more (an indirect table holds up
// to 32768), so longer lists go in several calls.
const iovMax = 1024

// preadvFull reads into bufs at off, in as many calls as the list needs,
// and stops at the first short read (end of file).
func preadvFull(fd int, bufs [][]byte, off int64) (int, error) {
	return vectored(bufs, off, func(chunk [][]byte, off int64) (int, error) {
		return unix.Preadv(fd, chunk, off)
	})
}

// pwritevFull writes bufs at off (or at the end, with RWF_APPEND) likewise.
func pwritevFull(fd int, bufs [][]byte, off int64, flags int) (int, error) {
	return vectored(bufs, off, func(chunk [][]byte, off int64) (int, error) {
		return unix.Pwritev2(fd, chunk, off, flags)
	})
}

// vectored runs op over bufs in chunks of at most iovMax buffers. An error
// after some bytes moved reports those bytes, as a short transfer.
func vectored(bufs [][]byte, off int64, op func([][]byte, int64) (int, error)) (int, error) {
	total := 0
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), iovMax)]
		want := 0
		for _, b := range chunk {
			want += len(b)
		}
		n, err := op(chunk, off)
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
