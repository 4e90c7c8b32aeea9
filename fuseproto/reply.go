package fuseproto

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// outView is the space for the reply: a sequence of writable buffers filled
// in order, fuse_out_header first.
type outView struct {
	bufs [][]byte
	n    int // total capacity of bufs
}

func newOutView(bufs [][]byte) outView {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return outView{bufs: bufs, n: n}
}

// writeAt copies src to offset off and returns how many bytes it wrote (fewer
// only when the view ends first).
func (v *outView) writeAt(src []byte, off int) int {
	done := 0
	for _, b := range v.bufs {
		if done == len(src) {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		done += copy(b[off:], src[done:])
		off = 0
	}
	return done
}

// slices appends to dst the sub-slices of the view covering [off, end), for
// a filesystem to read into directly.
func (v *outView) slices(dst [][]byte, off, end int) [][]byte {
	return appendSlices(dst, v.bufs, off, end)
}

// payloadCap is how many payload bytes fit after the out header.
func (c *call) payloadCap() int { return c.out.n - outHeaderSize }

// replyBytes places p as the reply payload. A payload that does not fit is
// answered with errTooBig instead: the out buffers are the kernel's (or the
// guest's) and their size is not ours to exceed.
func (c *call) replyBytes(p []byte, errTooBig syscall.Errno) syscall.Errno {
	if len(p) > c.payloadCap() {
		return c.reject(badRequest(errTooBig, "%d-byte reply in %d bytes of out buffer", len(p), c.payloadCap()))
	}
	c.payload = c.out.writeAt(p, outHeaderSize)
	return 0
}

// replyValue places the fixed-size structure *v as the reply payload.
func replyValue[T any](c *call, v *T) syscall.Errno {
	return c.replyBytes(asBytes(v), syscall.EIO)
}

// finish writes the out header for errno (payload bytes on success, none on
// error) and returns the length of the reply.
func (c *call) finish(errno syscall.Errno) int {
	if errno != 0 {
		c.payload = 0
		errno = c.srv.sanitizeErrno(c, errno)
	}
	n := outHeaderSize + c.payload
	hdr := fuse.OutHeader{
		Length: uint32(n),
		Status: -int32(errno),
		Unique: c.req.Header.Unique,
	}
	c.out.writeAt(asBytes(&hdr), 0)
	return n
}

// maxErrno bounds the errnos the kernel accepts in a reply: it rejects
// error <= -512 (the kernel-internal restart codes) as a protocol violation.
const maxErrno = 511

// sanitizeErrno maps an errno the kernel would refuse to EIO.
func (s *Server) sanitizeErrno(c *call, errno syscall.Errno) syscall.Errno {
	if errno <= maxErrno {
		return errno
	}
	s.warn("filesystem returned an invalid errno", c, badRequest(syscall.EIO, "errno %d", uint64(errno)))
	return syscall.EIO
}
