package fuseproto

import (
	"encoding/binary"
	"syscall"
)

// Handlers for the operations on nodes and directory entries. Each runs after
// the opcode table's checks: the fixed arguments and names are complete and
// valid, and the fixed reply fits.

// zeroed resets *v and returns v; reply structures are reused from the pool.
func zeroed[T any](v *T) *T {
	var zero T
	*v = zero
	return v
}

// replyIfOK answers errno, or the structure *v when errno is 0.
func replyIfOK[T any](c *call, errno syscall.Errno, v *T) syscall.Errno {
	if errno != 0 {
		return errno
	}
	return replyValue(c, v)
}

// fsBug answers EIO for a filesystem result that breaks the FileSystem
// contract, and logs it.
func (c *call) fsBug(format string, args ...any) syscall.Errno {
	c.srv.warn("filesystem returned an inconsistent result", c, badRequest(syscall.EIO, format, args...))
	return syscall.EIO
}

func doLookup(c *call) syscall.Errno {
	out := zeroed(&c.v.entryOut)
	return replyIfOK(c, c.fs().Lookup(&c.req, c.req.Node(), c.names[0], out), out)
}

func doForget(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.forgetIn)
	c.fs().Forget(c.req.Node(), in.Nlookup)
	return 0
}

// doBatchForget serves FUSE_BATCH_FORGET: fuse_batch_forget_in {count,
// dummy} followed by count fuse_forget_one records. The count must describe
// exactly the bytes present; a mismatch drops the whole batch, since a
// partial forget cannot be told apart from a corrupt one.
func doBatchForget(c *call) syscall.Errno {
	var hdr [8]byte
	c.in.readAt(hdr[:], inHeaderSize)
	count := binary.NativeEndian.Uint32(hdr[:4])
	pos := inHeaderSize + len(hdr)
	if uint64(count)*forgetOneSize != uint64(c.argsEnd-pos) {
		return c.reject(badRequest(syscall.EINVAL, "count %d but %d bytes of records", count, c.argsEnd-pos))
	}
	for range count {
		var one [forgetOneSize]byte
		c.in.readAt(one[:], pos)
		pos += forgetOneSize
		c.fs().Forget(NodeID(binary.NativeEndian.Uint64(one[0:])), binary.NativeEndian.Uint64(one[8:]))
	}
	return 0
}

func doGetAttr(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.getAttrIn)
	out := zeroed(&c.v.attrOut)
	return replyIfOK(c, c.fs().GetAttr(&c.req, in, out), out)
}

func doSetAttr(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.setAttrIn)
	out := zeroed(&c.v.attrOut)
	return replyIfOK(c, c.fs().SetAttr(&c.req, in, out), out)
}

// doReadlink serves FUSE_READLINK. The target is produced into a scratch
// buffer bounded by PATH_MAX and by the reply space, then copied out.
func doReadlink(c *call) syscall.Errno {
	dst := c.scratchBuf(min(pathMax, c.payloadCap()))
	n, errno := c.fs().Readlink(&c.req, dst)
	if errno != 0 {
		return errno
	}
	if n < 0 || n > len(dst) {
		return c.fsBug("READLINK returned %d bytes for a %d-byte buffer", n, len(dst))
	}
	return c.replyBytes(dst[:n], syscall.ERANGE)
}

func doSymlink(c *call) syscall.Errno {
	out := zeroed(&c.v.entryOut)
	return replyIfOK(c, c.fs().Symlink(&c.req, c.req.Node(), c.names[0], c.names[1], out), out)
}

func doMknod(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.mknodIn)
	out := zeroed(&c.v.entryOut)
	return replyIfOK(c, c.fs().Mknod(&c.req, in, c.names[0], out), out)
}

func doMkdir(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.mkdirIn)
	out := zeroed(&c.v.entryOut)
	return replyIfOK(c, c.fs().Mkdir(&c.req, in, c.names[0], out), out)
}

func doUnlink(c *call) syscall.Errno {
	return c.fs().Unlink(&c.req, c.req.Node(), c.names[0])
}

func doRmdir(c *call) syscall.Errno {
	return c.fs().Rmdir(&c.req, c.req.Node(), c.names[0])
}

// doRename serves RENAME and RENAME2. RENAME's fuse_rename_in is only
// newdir; decoding its 8 bytes into a fuse.RenameIn leaves Flags 0.
func doRename(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.renameIn)
	return c.fs().Rename(&c.req, in, c.names[0], c.names[1])
}

func doLink(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.linkIn)
	out := zeroed(&c.v.entryOut)
	return replyIfOK(c, c.fs().Link(&c.req, in, c.names[0], out), out)
}
