package fuseproto

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Handlers for the operations on open files and on the filesystem as a whole.

func doOpen(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.openIn)
	out := zeroed(&c.v.openOut)
	return replyIfOK(c, c.fs().Open(&c.req, in, out), out)
}

func doCreate(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.createIn)
	out := zeroed(&c.v.createOut)
	return replyIfOK(c, c.fs().Create(&c.req, in, c.names[0], out), out)
}

func doTmpfile(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.createIn)
	out := zeroed(&c.v.createOut)
	return replyIfOK(c, c.fs().Tmpfile(&c.req, in, out), out)
}

// doRead serves FUSE_READ. The filesystem reads straight into the out
// buffers after the header; in.Size is capped to the space there, so a
// request larger than its reply buffers reads short instead of failing.
func doRead(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.readIn)
	size := min(int(in.Size), c.payloadCap())
	in.Size = uint32(size)
	c.iov = c.out.slices(c.iov[:0], outHeaderSize, outHeaderSize+size)
	n, errno := c.fs().Read(&c.req, in, c.iov)
	if errno != 0 {
		return errno
	}
	if n < 0 || n > size {
		return c.fsBug("READ returned %d bytes for %d requested", n, size)
	}
	c.payload = n
	return 0
}

// doWrite serves FUSE_WRITE. The data is everything between fuse_write_in
// and the extensions; it reaches the filesystem as sub-slices of the input,
// without a copy.
func doWrite(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.writeIn)
	dataOff := inHeaderSize + c.argSize
	if int64(in.Size) != int64(c.argsEnd-dataOff) {
		return c.reject(badRequest(syscall.EINVAL, "size %d but %d data bytes", in.Size, c.argsEnd-dataOff))
	}
	if in.Size > c.req.Session.MaxWrite {
		return c.reject(badRequest(syscall.EINVAL, "size %d over max_write %d", in.Size, c.req.Session.MaxWrite))
	}
	c.iov = c.in.slices(c.iov[:0], dataOff, c.argsEnd)
	n, errno := c.fs().Write(&c.req, in, c.iov)
	if errno != 0 {
		return errno
	}
	if n > in.Size {
		return c.fsBug("WRITE reported %d bytes written of %d", n, in.Size)
	}
	out := &c.v.writeOut
	*out = fuse.WriteOut{Size: n}
	return replyValue(c, out)
}

func doStatFs(c *call) syscall.Errno {
	out := zeroed(&c.v.statfsOut)
	return replyIfOK(c, c.fs().StatFs(&c.req, out), out)
}

func doRelease(c *call) syscall.Errno {
	c.fs().Release(&c.req, decodeArgs(c, &c.v.releaseIn))
	return 0
}

func doFlush(c *call) syscall.Errno {
	return c.fs().Flush(&c.req, decodeArgs(c, &c.v.flushIn))
}

func doFsync(c *call) syscall.Errno {
	return c.fs().Fsync(&c.req, decodeArgs(c, &c.v.fsyncIn))
}

func doFallocate(c *call) syscall.Errno {
	return c.fs().Fallocate(&c.req, decodeArgs(c, &c.v.fallocateIn))
}

func doLseek(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.lseekIn)
	out := zeroed(&c.v.lseekOut)
	return replyIfOK(c, c.fs().Lseek(&c.req, in, out), out)
}

// doCopyFileRange serves FUSE_COPY_FILE_RANGE, whose reply is a
// fuse_write_out with the byte count.
func doCopyFileRange(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.copyFileRangeIn)
	n, errno := c.fs().CopyFileRange(&c.req, in)
	if errno != 0 {
		return errno
	}
	if uint64(n) > in.Len {
		return c.fsBug("COPY_FILE_RANGE reported %d bytes copied of %d", n, in.Len)
	}
	out := &c.v.writeOut
	*out = fuse.WriteOut{Size: n}
	return replyValue(c, out)
}

func doAccess(c *call) syscall.Errno {
	return c.fs().Access(&c.req, decodeArgs(c, &c.v.accessIn))
}

func doSyncFS(c *call) syscall.Errno {
	return c.fs().SyncFS(&c.req)
}
