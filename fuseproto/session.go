package fuseproto

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
