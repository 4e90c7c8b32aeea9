package fuseproto

import "syscall"

// Handlers for the operations on open directories.

func doOpenDir(c *call) syscall.Errno {
	in := decodeArgs(c, &c.v.openIn)
	out := zeroed(&c.v.openOut)
	return replyIfOK(c, c.fs().OpenDir(&c.req, in, out), out)
}

func doReadDir(c *call) syscall.Errno     { return readDir(c, false) }
func doReadDirPlus(c *call) syscall.Errno { return readDir(c, true) }

// readDir serves READDIR and READDIRPLUS. The entries are encoded into a
// scratch buffer bounded by the size the kernel asked for, by the reply
// space and by max_write (the kernel never asks for more than max_pages), so
// that a guest offering huge buffers cannot make us allocate a huge scratch
// buffer; then they are copied out.
func readDir(c *call, plus bool) syscall.Errno {
	in := decodeArgs(c, &c.v.readIn)
	size := min(int(in.Size), c.payloadCap(), int(c.srv.maxWrite))
	in.Size = uint32(size)
	w := &c.v.dirWriter
	w.reset(c.scratchBuf(size))
	defer w.reset(nil)
	if errno := c.fs().ReadDir(&c.req, in, plus, w); errno != 0 {
		return errno
	}
	return c.replyBytes(w.buf[:w.n], syscall.EIO)
}

func doReleaseDir(c *call) syscall.Errno {
	c.fs().ReleaseDir(&c.req, decodeArgs(c, &c.v.releaseIn))
	return 0
}

func doFsyncDir(c *call) syscall.Errno {
	return c.fs().FsyncDir(&c.req, decodeArgs(c, &c.v.fsyncIn))
}
