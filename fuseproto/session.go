package fuseproto

import (
	"fmt"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Protocol versions. We speak major 7 and negotiate the minor down to what
// the kernel offers, up to MaxMinor.
const (
	KernelMajor = 7
	// MinMinor is the oldest minor we serve: 7.27 is what Linux 4.20 offered
	// when virtio-fs arrived, and every structure from there on has the sizes
	// this package decodes.
	MinMinor = 27
	// MaxMinor is the newest minor whose wire format this package decodes
	// completely.
	MaxMinor = 41
)

// Session is what FUSE_INIT settled. It is plain data so that a migration
// destination can be handed it without ever seeing INIT itself.
type Session struct {
	Major uint32
	Minor uint32
	// Flags are the negotiated capabilities (CAP_* bits, 64 wide).
	Flags        uint64
	MaxWrite     uint32
	MaxReadahead uint32
	MaxPages     uint16
	TimeGran     uint32
}

// Has reports whether capability flag was negotiated.
func (s *Session) Has(flag uint64) bool { return s != nil && s.Flags&flag != 0 }

// CheckSession reports whether sess is a session a Server serving fsys
// with the given MaxWrite (ServerOptions.MaxWrite; 0 for the default) could
// have negotiated with some kernel: the version within what this package
// speaks, no capability beyond what fsys asks of a kernel that offers
// everything (FileSystem.Capabilities) and the request layer takes on its
// own, and limits no larger than the server's buffers. A migration
// destination installs a session it never negotiated; one from a hostile
// source could otherwise turn on what the destination's options forbid
// (SECURITY_CTX without --security-label, POSIX_ACL with id translation)
// or announce requests larger than its buffers.
func CheckSession(sess Session, fsys FileSystem, maxWrite uint32) error {
	maxWrite = normalizeMaxWrite(maxWrite)
	if sess.Major != KernelMajor || sess.Minor < MinMinor || sess.Minor > MaxMinor {
		return fmt.Errorf("FUSE protocol %d.%d: this daemon speaks %d.%d to %d.%d", sess.Major, sess.Minor, KernelMajor, MinMinor, KernelMajor, MaxMinor)
	}
	offered := negotiable(fsys.Capabilities())
	if extra := sess.Flags &^ offered; extra != 0 {
		return fmt.Errorf("FUSE capabilities %#x were negotiated, which this daemon's options do not offer (it offers %#x)", extra, offered)
	}
	if sess.MaxWrite < pageSize || sess.MaxWrite > maxWrite {
		return fmt.Errorf("max_write %d outside %d..%d", sess.MaxWrite, pageSize, maxWrite)
	}
	if maxPages := uint16(maxWrite / pageSize); sess.MaxPages == 0 || sess.MaxPages > maxPages {
		return fmt.Errorf("max_pages %d outside 1..%d", sess.MaxPages, maxPages)
	}
	if sess.TimeGran == 0 || sess.TimeGran > 1e9 {
		return fmt.Errorf("time granularity %d ns outside 1..1e9", sess.TimeGran)
	}
	return nil
}

// CheckSession is the package's CheckSession for this server's file system
// and limits.
func (s *Server) CheckSession(sess Session) error { return CheckSession(sess, s.fs, s.maxWrite) }

// negotiable is every capability INIT may settle when the file system asks
// for fsFlags and the kernel offers everything.
func negotiable(fsFlags uint64) uint64 {
	return fsFlags&^refusedFlags | layerFlags | fuse.CAP_INIT_EXT
}
