package fuseproto

import (
	"bytes"
	"errors"
	"fmt"
	"syscall"
	"unsafe"
)

// inView is the request as the transport handed it over: a sequence of
// buffers whose concatenation is the request. The buffers may be guest
// memory that the guest keeps changing, so nothing is read from them twice:
// every field is copied out once and checked on the copy.
type inView struct {
	bufs [][]byte
	n    int // total length of bufs
}

func newInView(bufs [][]byte) inView {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return inView{bufs: bufs, n: n}
}

// readAt copies len(dst) bytes starting at offset off into dst and returns
// how many it copied (fewer only when the view ends first).
func (v *inView) readAt(dst []byte, off int) int {
	done := 0
	for _, b := range v.bufs {
		if done == len(dst) {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		done += copy(dst[done:], b[off:])
		off = 0
	}
	return done
}

// slices appends to dst the sub-slices of the view covering [off, end), so
// that bulk data can be handed on without a copy.
func (v *inView) slices(dst [][]byte, off, end int) [][]byte {
	return appendSlices(dst, v.bufs, off, end)
}

// appendSlices appends the sub-slices of bufs covering [off, end) of their
// concatenation to dst.
func appendSlices(dst, bufs [][]byte, off, end int) [][]byte {
	want := end - off
	for _, b := range bufs {
		if want <= 0 {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		if len(b) > want {
			b = b[:want]
		}
		if len(b) > 0 {
			dst = append(dst, b)
		}
		want -= len(b)
	}
	return dst
}

// asBytes returns the memory of *v as a byte slice. It is only ever applied
// to values this package owns (pooled scratch structures and stack values),
// never to guest memory: decoding copies guest bytes into such a value, and
// encoding copies such a value out. The go-fuse structures are plain
// integers laid out exactly like the kernel's, in the host's byte order,
// which is the byte order of the FUSE protocol.
func asBytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// decodeIn fills *v, a go-fuse *In structure beginning with fuse.InHeader,
// from the already checked header copy and the first n argument bytes of
// the request; the rest of *v is zeroed. It returns v.
//
// The header is taken from the copy made (and validated) at the start of the
// request rather than read again, so the guest cannot change it in between.
func decodeIn[T any](c *call, v *T, n int) *T {
	b := asBytes(v)
	h := copy(b, asBytes(&c.req.Header))
	args := b[h:]
	// The table test guarantees n fits; min keeps a table mistake from
	// becoming a panic on guest input.
	n = min(n, len(args))
	got := c.in.readAt(args[:n], inHeaderSize)
	clear(args[got:])
	return v
}

// decodeArgs is decodeIn for the argument size the opcode table checked.
func decodeArgs[T any](c *call, v *T) *T {
	return decodeIn(c, v, c.argSize)
}

// badRequest returns an error describing a malformed request that is answered
// with errno. errnoOf recovers the errno.
func badRequest(errno syscall.Errno, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errno)...)
}

// errnoOf returns the errno err carries, EIO when it carries none.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}

// parseArgs checks the request against its table entry: the length field,
// the extension area, the fixed arguments and the names. On success c.argSize,
// c.argsEnd, c.names and c.tailOff describe the request.
func (c *call) parseArgs(sess *Session) error {
	h := &c.req.Header
	if int64(h.Length) != int64(c.in.n) {
		return badRequest(syscall.EINVAL, "length field %d but %d bytes present", h.Length, c.in.n)
	}
	// Extensions (FUSE 7.36+) sit at the very end of the request, after
	// the arguments and any WRITE data.
	ext := int(h.TotalExtlen) * 8
	if ext > c.in.n-inHeaderSize {
		return badRequest(syscall.EINVAL, "%d bytes of extensions in a %d-byte request", ext, c.in.n)
	}
	c.argsEnd = c.in.n - ext
	if ext > 0 {
		if ext > maxExtensions {
			return badRequest(syscall.EINVAL, "%d bytes of extensions, at most %d accepted", ext, maxExtensions)
		}
		// Copied first, so that the guest cannot change a record
		// between its check and its use.
		if cap(c.extBuf) < ext {
			c.extBuf = make([]byte, ext)
		}
		buf := c.extBuf[:ext]
		c.in.readAt(buf, c.argsEnd)
		if err := c.req.Ext.parse(buf); err != nil {
			return fmt.Errorf("extensions: %w", err)
		}
	}

	c.argSize = c.op.argSizeIn(sess)
	pos := inHeaderSize + c.argSize
	if pos > c.argsEnd {
		return badRequest(syscall.EINVAL, "%d argument bytes, want at least %d", c.argsEnd-inHeaderSize, c.argSize)
	}
	for i, kind := range c.op.names {
		if kind == nameNone {
			break
		}
		name, next, err := c.parseName(kind, pos)
		if err != nil {
			return fmt.Errorf("name %d: %w", i, err)
		}
		c.names[i] = name
		pos = next
	}
	// Bytes after the names are the SETXATTR value; for other operations
	// they are ignored (TMPFILE, for one, is sent with the name "/" that
	// the VFS gives unnamed files).
	c.tailOff = pos
	return nil
}

// parseName reads the NUL-terminated string of the given kind starting at
// off and returns it with the offset just past its NUL. The bytes are copied
// before they are looked at, so a guest rewriting them meanwhile only changes
// which (checked) name is served.
func (c *call) parseName(kind nameKind, off int) (string, int, error) {
	maxLen := NameMax
	if kind == nameTarget {
		maxLen = pathMax - 1
	}
	// Copy at most one byte more than the longest valid name: enough to
	// see its NUL, or to know it is too long.
	avail := min(c.argsEnd-off, maxLen+1)
	buf := c.nameBuf[:avail]
	c.in.readAt(buf, off)
	n := bytes.IndexByte(buf, 0)
	if n < 0 {
		if avail == maxLen+1 {
			return "", 0, badRequest(nameTooLong(kind), "longer than %d bytes", maxLen)
		}
		return "", 0, badRequest(syscall.EINVAL, "not NUL-terminated")
	}
	name := buf[:n]
	if err := checkName(kind, name); err != nil {
		return "", 0, err
	}
	return string(name), off + n + 1, nil
}

// nameTooLong is the errno for a string over its limit: ERANGE for an
// extended attribute name, as setxattr(2) reports, ENAMETOOLONG otherwise.
func nameTooLong(kind nameKind) syscall.Errno {
	if kind == nameXattr {
		return syscall.ERANGE
	}
	return syscall.ENAMETOOLONG
}

// checkName applies the rules of kind to name, which holds no NUL and is
// within the length limit.
func checkName(kind nameKind, name []byte) error {
	if len(name) == 0 {
		if kind == nameXattr {
			return badRequest(syscall.ERANGE, "empty attribute name")
		}
		return badRequest(syscall.EINVAL, "empty")
	}
	switch kind {
	case nameLookup, nameEntry:
		if bytes.IndexByte(name, '/') >= 0 {
			return badRequest(syscall.EINVAL, "%q contains '/'", name)
		}
		if kind == nameEntry && isDotOrDotDot(name) {
			return badRequest(syscall.EINVAL, "%q cannot be created or removed", name)
		}
	}
	return nil
}

func isDotOrDotDot(name []byte) bool {
	return string(name) == "." || string(name) == ".."
}
