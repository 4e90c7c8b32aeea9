package fuseproto

import (
	"bytes"
	"encoding/binary"
	"syscall"
)

// Request extensions (FUSE 7.36+): fuse_ext_header records the kernel appends
// after a request's arguments, their total length in 8-byte units in the
// header's total_extlen. The kernel sends them on the requests that create a
// node (CREATE, MKNOD, MKDIR, SYMLINK, TMPFILE) once SECURITY_CTX or
// CREATE_SUPP_GROUP is negotiated.
const (
	// extMaxSecCtx is FUSE_MAX_NR_SECCTX: record types 0..31 are a
	// security context block whose type is the number of contexts.
	extMaxSecCtx = 31
	// extGroups is FUSE_EXT_GROUPS: supplementary groups of the caller.
	extGroups = 32

	extHeaderSize = 8 // fuse_ext_header: size, type
	secCtxSize    = 8 // fuse_secctx: size, padding
	// maxSuppGroups bounds the groups kept from one request. The kernel
	// sends at most one (the parent directory's group when the caller is
	// a member); a longer list is refused rather than stored.
	maxSuppGroups = 1
	// maxSecCtx bounds the security contexts kept from one request. The
	// kernel sends at most one (one LSM labels a new inode).
	maxSecCtx = 1
	// maxExtensions bounds the extension area: room for one maximal
	// security context and a page of anything else.
	maxExtensions = xattrSizeMax + pageSize
)

// SecurityContext is one security label of a new node (FUSE_SECURITY_CTX):
// the extended attribute Name (such as "security.selinux") that the guest's
// LSM wants set to Value on the node it creates.
type SecurityContext struct {
	Name  string
	Value []byte
}

// Extensions are the request extensions of one request. The zero value means
// none were sent.
type Extensions struct {
	// SuppGroups are supplementary groups of the caller (FUSE_EXT_GROUPS).
	// With CREATE_SUPP_GROUP the kernel sends the parent directory's
	// group when the caller belongs to it without it being the caller's
	// fsgid, so that the daemon can create in a directory writable only
	// through that group.
	SuppGroups []uint32
	// SecCtx is the security context of the node being created, if any
	// (FUSE_SECURITY_CTX).
	SecCtx []SecurityContext

	groups [maxSuppGroups]uint32
	secctx [maxSecCtx]SecurityContext
}

// parse decodes the extension area ext, which the caller has copied
// out of the request, into e. Everything is checked: a record shorter than
// its header, a size that is not a multiple of 8 or runs past the area, a
// count that does not fit, a context name without NUL or a value past its
// record all give an error, and nothing is read outside ext. Unknown record
// types are skipped, as the kernel asks.
func (e *Extensions) parse(ext []byte) error {
	e.SuppGroups, e.SecCtx = nil, nil
	for len(ext) > 0 {
		if len(ext) < extHeaderSize {
			return badRequest(syscall.EINVAL, "extension of %d bytes, shorter than its header", len(ext))
		}
		size := binary.NativeEndian.Uint32(ext)
		typ := binary.NativeEndian.Uint32(ext[4:])
		if size < extHeaderSize || size%8 != 0 || uint64(size) > uint64(len(ext)) {
			return badRequest(syscall.EINVAL, "extension of type %d has size %d in %d bytes", typ, size, len(ext))
		}
		rec := ext[extHeaderSize:size]
		ext = ext[size:]
		switch {
		case typ == 0:
			// No contexts: the kernel sends an empty block when
			// the LSM has no label for the node.
		case typ <= extMaxSecCtx:
			if e.SecCtx != nil {
				return badRequest(syscall.EINVAL, "two security context extensions")
			}
			if err := e.parseSecCtx(rec, int(typ)); err != nil {
				return err
			}
		case typ == extGroups:
			if e.SuppGroups != nil {
				return badRequest(syscall.EINVAL, "two supplementary group extensions")
			}
			if err := e.parseGroups(rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseGroups decodes fuse_supp_groups: a count, padding, then the groups.
func (e *Extensions) parseGroups(rec []byte) error {
	if len(rec) < 4 {
		return badRequest(syscall.EINVAL, "supplementary group extension of %d bytes", len(rec))
	}
	n := binary.NativeEndian.Uint32(rec)
	rec = rec[4:]
	if uint64(n) > uint64(len(rec)/4) {
		return badRequest(syscall.EINVAL, "%d supplementary groups in %d bytes", n, len(rec))
	}
	if n > maxSuppGroups {
		return badRequest(syscall.EINVAL, "%d supplementary groups, at most %d expected", n, maxSuppGroups)
	}
	for i := range int(n) {
		e.groups[i] = binary.NativeEndian.Uint32(rec[4*i:])
	}
	e.SuppGroups = e.groups[:n]
	return nil
}

// parseSecCtx decodes n security contexts: each a fuse_secctx (the value's
// size), the NUL-terminated attribute name and the value, padded to 8 bytes.
func (e *Extensions) parseSecCtx(rec []byte, n int) error {
	if n > maxSecCtx {
		return badRequest(syscall.EINVAL, "%d security contexts, at most %d expected", n, maxSecCtx)
	}
	for i := range n {
		if len(rec) < secCtxSize {
			return badRequest(syscall.EINVAL, "security context %d truncated", i)
		}
		valueSize := binary.NativeEndian.Uint32(rec)
		rest := rec[secCtxSize:]
		nul := bytes.IndexByte(rest[:min(len(rest), NameMax+1)], 0)
		if nul <= 0 {
			return badRequest(syscall.EINVAL, "security context %d: name empty, too long or not NUL-terminated", i)
		}
		name := rest[:nul]
		rest = rest[nul+1:]
		if uint64(valueSize) > uint64(len(rest)) || valueSize > xattrSizeMax {
			return badRequest(syscall.EINVAL, "security context %d: %d-byte value in %d bytes", i, valueSize, len(rest))
		}
		e.secctx[i] = SecurityContext{Name: string(name), Value: rest[:valueSize]}
		used := secCtxSize + nul + 1 + int(valueSize)
		rec = rec[min((used+7)&^7, len(rec)):]
	}
	e.SecCtx = e.secctx[:n]
	return nil
}
