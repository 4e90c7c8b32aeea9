package fuseproto

import (
	"log/slog"
	"strconv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// layerFlags are the capabilities the request layer negotiates on its own
// account whenever the kernel offers them, whatever the filesystem wants:
// they concern how requests are shaped, which is this layer's business.
const layerFlags = fuse.CAP_ASYNC_READ | // concurrent READs are fine, we serve requests in parallel
	fuse.CAP_BIG_WRITES | // WRITEs up to max_write rather than one page
	fuse.CAP_ATOMIC_O_TRUNC | // O_TRUNC reaches OPEN instead of a separate SETATTR
	fuse.CAP_MAX_PAGES | // honour max_pages, so requests can reach MaxWrite
	fuse.CAP_PARALLEL_DIROPS // lookups and readdirs in one directory may overlap

// refusedFlags are capabilities never negotiated, whatever the filesystem
// wants: their requests are answered with ENOSYS here (locks, DAX mappings),
// they need transport support this layer does not have (passthrough backing
// files, io_uring), or the layer manages them itself (INIT_EXT).
const refusedFlags = fuse.CAP_POSIX_LOCKS | fuse.CAP_FLOCK_LOCKS |
	fuse.CAP_HAS_INODE_DAX | fuse.CAP_MAP_ALIGNMENT |
	fuse.CAP_PASSTHROUGH | fuse.CAP_OVER_IO_URING |
	fuse.CAP_INIT_EXT | fuse.CAP_INIT_RESERVED

// defaultMaxPages is the kernel's max_pages when CAP_MAX_PAGES is not
// negotiated (FUSE_DEFAULT_MAX_PAGES_PER_REQ).
const defaultMaxPages = 32

// doInit serves FUSE_INIT: it negotiates the protocol version and the
// capabilities and publishes the Session.
func doInit(c *call) syscall.Errno {
	s := c.srv
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if s.session.Load() != nil {
		// A guest that reboots (or whose driver is reloaded) starts over
		// with INIT on the same device and never sends DESTROY: drop
		// what the old session held, as virtiofsd does, and start anew.
		s.logSession("INIT on a live session: the guest started over; dropping the old session")
		s.fs.Destroy()
		s.session.Store(nil)
	}
	// fuse_init_in grew with 7.36; copy whatever the kernel sent, up to
	// the size we know.
	in := decodeIn(c, &c.v.initIn, min(c.argsEnd-inHeaderSize, initInMaxSize))
	out := &c.v.initOut
	*out = fuse.InitOut{}
	switch {
	case in.Major < KernelMajor:
		return c.reject(badRequest(syscall.EPROTO, "kernel protocol %d.%d too old", in.Major, in.Minor))
	case in.Major > KernelMajor:
		// A newer major: answer with ours and the kernel sends a
		// second INIT speaking it (or gives up).
		out.Major = KernelMajor
		out.Minor = MaxMinor
		return replyValue(c, out)
	case in.Minor < MinMinor:
		return c.reject(badRequest(syscall.EPROTO, "kernel protocol 7.%d older than 7.%d", in.Minor, MinMinor))
	}
	minor := min(in.Minor, MaxMinor)

	kernelFlags := uint64(in.Flags)
	if kernelFlags&fuse.CAP_INIT_EXT != 0 {
		kernelFlags = in.Flags64()
	}

	// The filesystem sees the negotiated version and our limits, and may
	// lower the limits.
	*out = fuse.InitOut{
		Major:        KernelMajor,
		Minor:        minor,
		MaxReadAhead: in.MaxReadAhead,
		MaxWrite:     s.maxWrite,
		MaxPages:     s.maxPages(),
		TimeGran:     1,
	}
	want, errno := s.fs.Init(kernelFlags, out)
	if errno != 0 {
		return errno
	}
	if dropped := want & refusedFlags &^ fuse.CAP_INIT_EXT & kernelFlags; dropped != 0 {
		s.logSession("FUSE capabilities not supported by the request layer",
			slog.String("flags", "0x"+strconv.FormatUint(dropped, 16)))
	}
	flags := (want&^refusedFlags | layerFlags) & kernelFlags
	if kernelFlags&fuse.CAP_INIT_EXT != 0 {
		// Flags2 is only read by a kernel that offered INIT_EXT.
		flags |= fuse.CAP_INIT_EXT
	}

	// The layer owns the version and the flags; the limits the filesystem
	// may lower but not raise, since the buffers were sized for them.
	out.Major = KernelMajor
	out.Minor = minor
	out.Flags = uint32(flags)
	out.Flags2 = uint32(flags >> 32)
	if out.MaxWrite == 0 || out.MaxWrite > s.maxWrite {
		out.MaxWrite = s.maxWrite
	}
	out.MaxWrite = max(out.MaxWrite, pageSize) // the kernel's floor too
	if out.MaxPages == 0 || out.MaxPages > s.maxPages() {
		out.MaxPages = s.maxPages()
	}
	out.MaxReadAhead = min(out.MaxReadAhead, in.MaxReadAhead)

	sess := &Session{
		Major:        KernelMajor,
		Minor:        minor,
		Flags:        flags,
		MaxWrite:     out.MaxWrite,
		MaxReadahead: out.MaxReadAhead,
		MaxPages:     defaultMaxPages,
		TimeGran:     out.TimeGran,
	}
	if flags&fuse.CAP_MAX_PAGES != 0 {
		sess.MaxPages = out.MaxPages
	}
	if errno := replyValue(c, out); errno != 0 {
		return errno
	}
	s.session.Store(sess)
	s.logSession("FUSE session initialized",
		slog.Uint64("kernel_major", uint64(in.Major)),
		slog.Uint64("kernel_minor", uint64(in.Minor)),
		slog.Uint64("minor", uint64(minor)),
		slog.String("flags", "0x"+strconv.FormatUint(flags, 16)),
		slog.Uint64("max_write", uint64(sess.MaxWrite)),
		slog.Uint64("max_pages", uint64(sess.MaxPages)))
	return 0
}

// Reset ends the session as DESTROY would, for a device reset that the
// guest does not announce (VHOST_USER_RESET_DEVICE).
func (s *Server) Reset() {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if s.session.Load() != nil {
		s.fs.Destroy()
		s.session.Store(nil)
	}
}

// doDestroy serves FUSE_DESTROY. The session ends with it: virtio-fs sends
// DESTROY on unmount and a fresh INIT on the next mount of the same device.
func doDestroy(c *call) syscall.Errno {
	s := c.srv
	s.initMu.Lock()
	defer s.initMu.Unlock()
	s.fs.Destroy()
	s.session.Store(nil)
	s.logSession("FUSE session destroyed")
	return 0
}
