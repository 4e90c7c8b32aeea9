package fuseproto

import (
	"math"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Handlers for the extended attribute operations.

func doGetXAttr(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.getXAttrIn)
	return c.xattrReply(in.Size, func(dst []byte) (int, syscall.Errno) {
		return c.fs().GetXAttr(&c.req, c.names[0], dst)
	})
}

func doListXAttr(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.getXAttrIn)
	return c.xattrReply(in.Size, func(dst []byte) (int, syscall.Errno) {
		return c.fs().ListXAttr(&c.req, dst)
	})
}

// xattrReply implements the GETXATTR/LISTXATTR convention: size 0 asks for
// the size the data needs (a fuse_getxattr_out), any other size for the data
// itself, which the filesystem refuses with ERANGE when it is larger.
//
// The data goes through a scratch buffer bounded by size, XATTR_SIZE_MAX and
// the reply space: the guest picks size, and must not pick our allocation.
func (c *call) xattrReply(size uint32, get func(dst []byte) (int, syscall.Errno)) syscall.Errno {
	if size == 0 {
		n, errno := get(nil)
		if errno != 0 {
			return errno
		}
		if n < 0 || n > math.MaxUint32 {
			return c.fsBug("%s reported a %d-byte value", c.op.name, n)
		}
		out := &c.v.getXAttrOut
		*out = fuse.GetXAttrOut{Size: uint32(n)}
		return replyValue(c, out)
	}
	limit := min(int64(size), xattrSizeMax, int64(c.payloadCap()))
	if limit == 0 {
		// No room for any data, and a zero-length dst would ask the
		// filesystem for the size instead.
		return syscall.ERANGE
	}
	dst := c.scratchBuf(int(limit))
	n, errno := get(dst)
	if errno != 0 {
		return errno
	}
	if n < 0 || n > len(dst) {
		return c.fsBug("%s returned %d bytes for a %d-byte buffer", c.op.name, n, len(dst))
	}
	return c.replyBytes(dst[:n], syscall.ERANGE)
}

// doSetXAttr serves FUSE_SETXATTR: fuse_setxattr_in, the name, then exactly
// size bytes of value, copied so the filesystem sees a stable value.
func doSetXAttr(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.setXAttrIn)
	if in.Size > xattrSizeMax {
		return c.reject(badRequest(syscall.E2BIG, "%d-byte value", in.Size))
	}
	if int64(c.argsEnd-c.tailOff) != int64(in.Size) {
		return c.reject(badRequest(syscall.EINVAL, "size %d but %d value bytes", in.Size, c.argsEnd-c.tailOff))
	}
	value := c.scratchBuf(int(in.Size))
	c.in.readAt(value, c.tailOff)
	return c.fs().SetXAttr(&c.req, in, c.names[0], value)
}

func doRemoveXAttr(c *call) syscall.Errno {
	return c.fs().RemoveXAttr(&c.req, c.names[0])
}
