package migrate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The state is decoded by hand rather than by the msgpack package's
// reflection: that one decodes nil as any value and allocates for every
// element whatever it holds, so a state of inodes that are each one nil
// byte cost hundreds of times its size before validation could refuse it.
// This decoder takes only what ferryfs writes: every field that is always
// written is required, no key is unknown or repeated, no value is nil but
// the lists ferryfs writes as nil when empty, and an array may claim no
// more elements than its remaining bytes can hold, so that it is allocated
// at once, in proportion to those bytes. An element costs its fixed size
// plus the strings and bytes it holds, which its bytes carry.

// wireReader reads msgpack values from b.
type wireReader struct {
	b   []byte
	off int
}

var errTruncated = errors.New("unexpected end of the document")

// Smallest encodings of an inode ({id, lookups, type}) and of a handle
// ({id, node, flags, guest_flags}), each value one byte.
const (
	minInodeBytes  = 1 + (1 + len("id") + 1) + (1 + len("lookups") + 1) + (1 + len("type") + 1)
	minHandleBytes = 1 + (1 + len("id") + 1) + (1 + len("node") + 1) + (1 + len("flags") + 1) + (1 + len("guest_flags") + 1)
	// maxKeyLen is longer than any key ferryfs writes.
	maxKeyLen = 32
)

func (r *wireReader) left() int { return len(r.b) - r.off }

func (r *wireReader) take(n int) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, errTruncated
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p, nil
}

func (r *wireReader) code() (byte, error) {
	if r.left() == 0 {
		return 0, errTruncated
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// peekNil consumes a nil and reports whether there was one.
func (r *wireReader) peekNil() bool {
	if r.left() > 0 && r.b[r.off] == 0xc0 {
		r.off++
		return true
	}
	return false
}

// be reads an n-byte big-endian unsigned number.
func (r *wireReader) be(n int) (uint64, error) {
	p, err := r.take(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
	return binary.BigEndian.Uint64(p), nil
}

// formatName names the msgpack format starting with c, for errors.
func formatName(c byte) string {
	switch {
	case c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3):
		return "an integer"
	case c <= 0x8f || c == 0xde || c == 0xdf:
		return "a map"
	case c <= 0x9f || c == 0xdc || c == 0xdd:
		return "an array"
	case c <= 0xbf || (c >= 0xd9 && c <= 0xdb):
		return "a string"
	case c == 0xc0:
		return "nil"
	case c == 0xc2 || c == 0xc3:
		return "a boolean"
	case c >= 0xc4 && c <= 0xc6:
		return "binary"
	}
	return fmt.Sprintf("format %#x", c)
}

func (r *wireReader) mapLen() (int, error) {
	c, err := r.code()
	switch {
	case err != nil:
		return 0, err
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), nil
	case c == 0xde:
		n, err := r.be(2)
		return int(n), err
	case c == 0xdf:
		n, err := r.be(4)
		return int(n), err
	}
	return 0, fmt.Errorf("%s, want a map", formatName(c))
}

// arrayLen reads an array header; nil is an array of none.
func (r *wireReader) arrayLen() (n int, isNil bool, err error) {
	c, err := r.code()
	switch {
	case err != nil:
		return 0, false, err
	case c == 0xc0:
		return 0, true, nil
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), false, nil
	case c == 0xdc:
		n, err := r.be(2)
		return int(n), false, err
	case c == 0xdd:
		n, err := r.be(4)
		return int(n), false, err
	}
	return 0, false, fmt.Errorf("%s, want an array", formatName(c))
}

// strBytes reads a string of at most max bytes, without copying it.
func (r *wireReader) strBytes(max int) ([]byte, error) {
	c, err := r.code()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c == 0xd9:
		n, err = r.be(1)
	case c == 0xda:
		n, err = r.be(2)
	case c == 0xdb:
		n, err = r.be(4)
	default:
		return nil, fmt.Errorf("%s, want a string", formatName(c))
	}
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("string of %d bytes, at most %d", n, max)
	}
	return r.take(int(n))
}

func (r *wireReader) str(max int) (string, error) {
	p, err := r.strBytes(max)
	return string(p), err
}

// key reads a map key; it aliases the document.
func (r *wireReader) key() ([]byte, error) {
	k, err := r.strBytes(math.MaxInt32)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return k, nil
}

// bin reads binary of at most max bytes (nil when empty), copied out of
// the document so that the document can go.
func (r *wireReader) bin(max int) ([]byte, error) {
	if r.peekNil() {
		return nil, nil
	}
	c, err := r.code()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch c {
	case 0xc4:
		n, err = r.be(1)
	case 0xc5:
		n, err = r.be(2)
	case 0xc6:
		n, err = r.be(4)
	default:
		return nil, fmt.Errorf("%s, want binary", formatName(c))
	}
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%d bytes, at most %d", n, max)
	}
	p, err := r.take(int(n))
	if err != nil || n == 0 {
		return nil, err
	}
	return append([]byte(nil), p...), nil
}

// integer reads any msgpack integer: neg says it is negative, u is its
// value (or, when negative, its two's complement).
func (r *wireReader) integer() (u uint64, neg bool, err error) {
	c, err := r.code()
	if err != nil {
		return 0, false, err
	}
	switch {
	case c <= 0x7f:
		return uint64(c), false, nil
	case c >= 0xe0:
		return uint64(int64(int8(c))), true, nil
	case c >= 0xcc && c <= 0xcf:
		u, err := r.be(1 << (c - 0xcc))
		return u, false, err
	case c >= 0xd0 && c <= 0xd3:
		n := 1 << (c - 0xd0)
		u, err := r.be(n)
		if err != nil {
			return 0, false, err
		}
		// Sign-extend the n-byte value.
		v := int64(u<<(64-8*n)) >> (64 - 8*n)
		return uint64(v), v < 0, nil
	}
	return 0, false, fmt.Errorf("%s, want an integer", formatName(c))
}

func (r *wireReader) uint(max uint64) (uint64, error) {
	u, neg, err := r.integer()
	switch {
	case err != nil:
		return 0, err
	case neg:
		return 0, fmt.Errorf("%d, want a number from 0", int64(u))
	case u > max:
		return 0, fmt.Errorf("%d, at most %d", u, max)
	}
	return u, nil
}

func (r *wireReader) int32() (int32, error) {
	u, neg, err := r.integer()
	switch {
	case err != nil:
		return 0, err
	case neg && int64(u) < math.MinInt32:
		return 0, fmt.Errorf("%d, at least %d", int64(u), math.MinInt32)
	case !neg && u > math.MaxInt32:
		return 0, fmt.Errorf("%d, at most %d", u, math.MaxInt32)
	}
	return int32(int64(u)), nil
}

func (r *wireReader) bool() (bool, error) {
	c, err := r.code()
	switch {
	case err != nil:
		return false, err
	case c == 0xc2:
		return false, nil
	case c == 0xc3:
		return true, nil
	}
	return false, fmt.Errorf("%s, want a boolean", formatName(c))
}

// field reads the key of a map entry: which of names it is. No key may
// be unknown or come twice; seen has a bit per key read so far.
func (r *wireReader) field(names []string, seen *uint32) (int, error) {
	key, err := r.key()
	if err != nil {
		return 0, err
	}
	for k, name := range names {
		if string(key) != name {
			continue
		}
		if *seen&(1<<k) != 0 {
			return 0, fmt.Errorf("key %q twice", key)
		}
		*seen |= 1 << k
		return k, nil
	}
	if len(key) > maxKeyLen {
		return 0, fmt.Errorf("unknown key of %d bytes", len(key))
	}
	return 0, fmt.Errorf("unknown key %q", key)
}

// present checks that every field of names whose bit is in required was
// seen.
func present(names []string, required, seen uint32) error {
	for k, name := range names {
		if required&^seen&(1<<k) != 0 {
			return fmt.Errorf("no %s", name)
		}
	}
	return nil
}

// all is the required mask of n fields that are all required.
func all(n int) uint32 { return 1<<n - 1 }

var stateFields = []string{"mode", "session", "options", "next_node", "next_handle", "inodes", "handles"}

func (r *wireReader) state() (*State, error) {
	n, err := r.mapLen()
	if err != nil {
		return nil, err
	}
	s := &State{}
	var seen uint32
	for range n {
		k, err := r.field(stateFields, &seen)
		if err != nil {
			return nil, err
		}
		switch k {
		case 0:
			var m string
			m, err = r.str(maxOptionText)
			s.Mode = Mode(m)
		case 1:
			err = r.session(&s.Session)
		case 2:
			err = r.options(&s.Options)
		case 3:
			s.NextNode, err = r.uint(math.MaxUint64)
		case 4:
			s.NextHandle, err = r.uint(math.MaxUint64)
		case 5:
			s.Inodes, err = list(r, MaxInodes, minInodeBytes, (*wireReader).inode)
		case 6:
			s.Handles, err = list(r, MaxHandles, minHandleBytes, (*wireReader).handle)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", stateFields[k], err)
		}
	}
	return s, present(stateFields, all(len(stateFields)), seen)
}

var sessionFields = []string{"major", "minor", "flags", "max_write", "max_readahead", "max_pages", "time_gran"}

func (r *wireReader) session(s *Session) error {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	var seen uint32
	for range n {
		k, err := r.field(sessionFields, &seen)
		if err != nil {
			return err
		}
		var v uint64
		switch k {
		case 2:
			s.Flags, err = r.uint(math.MaxUint64)
		case 5:
			v, err = r.uint(math.MaxUint16)
			s.MaxPages = uint16(v)
		case 0:
			v, err = r.uint(math.MaxUint32)
			s.Major = uint32(v)
		case 1:
			v, err = r.uint(math.MaxUint32)
			s.Minor = uint32(v)
		case 3:
			v, err = r.uint(math.MaxUint32)
			s.MaxWrite = uint32(v)
		case 4:
			v, err = r.uint(math.MaxUint32)
			s.MaxReadahead = uint32(v)
		case 6:
			v, err = r.uint(math.MaxUint32)
			s.TimeGran = uint32(v)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sessionFields[k], err)
		}
	}
	return present(sessionFields, all(len(sessionFields)), seen)
}

var optionFields = []string{"cache", "writeback", "readonly", "xattr", "posix_acl", "security_label", "xattrmap",
	"translate_uid", "translate_gid", "announce_submounts", "killpriv_v2"}

func (r *wireReader) options(o *Options) error {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	var seen uint32
	for range n {
		k, err := r.field(optionFields, &seen)
		if err != nil {
			return err
		}
		switch k {
		case 0:
			o.Cache, err = r.str(maxOptionText)
		case 1:
			o.Writeback, err = r.bool()
		case 2:
			o.Readonly, err = r.bool()
		case 3:
			o.Xattr, err = r.bool()
		case 4:
			o.PosixACL, err = r.bool()
		case 5:
			o.SecurityLabel, err = r.bool()
		case 6:
			o.XattrMap, err = r.str(maxOptionText)
		case 7:
			o.TranslateUID, err = r.strings()
		case 8:
			o.TranslateGID, err = r.strings()
		case 9:
			o.AnnounceSubmount, err = r.bool()
		case 10:
			o.KillprivV2, err = r.bool()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", optionFields[k], err)
		}
	}
	return present(optionFields, all(len(optionFields)), seen)
}

// maxTranslations bounds --translate-uid and --translate-gid rules.
const maxTranslations = 1000

// strings reads a list of option strings; nil is none.
func (r *wireReader) strings() ([]string, error) {
	// A string takes at least its one-byte header.
	return list(r, maxTranslations, 1, func(r *wireReader, s *string) error {
		var err error
		*s, err = r.str(maxOptionText)
		return err
	})
}

// list decodes an array of at most max elements of at least minBytes
// each into a slice allocated at once: an array that claims more elements
// than its remaining bytes can hold is refused before anything is
// allocated for them. nil is an empty list.
func list[T any](r *wireReader, max, minBytes int, elem func(*wireReader, *T) error) ([]T, error) {
	n, isNil, err := r.arrayLen()
	switch {
	case err != nil:
		return nil, err
	case isNil:
		return nil, nil
	case n > max:
		return nil, fmt.Errorf("%d elements, at most %d", n, max)
	case n > r.left()/minBytes:
		return nil, fmt.Errorf("%d elements in the %d bytes left: an element takes at least %d", n, r.left(), minBytes)
	}
	out := make([]T, n)
	for k := range out {
		if r.peekNil() {
			return nil, fmt.Errorf("[%d]: nil", k)
		}
		if err := elem(r, &out[k]); err != nil {
			return nil, fmt.Errorf("[%d]: %w", k, err)
		}
	}
	return out, nil
}

// inodeFields are Inode's keys; the first three are always written.
var inodeFields = []string{"id", "lookups", "type", "parent", "name", "handle", "unlinked", "invalid", "gone", "lost"}

func (r *wireReader) inode(i *Inode) error {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	var seen uint32
	for range n {
		k, err := r.field(inodeFields, &seen)
		if err != nil {
			return err
		}
		var v uint64
		switch k {
		case 0:
			i.ID, err = r.uint(math.MaxUint64)
		case 1:
			i.Lookups, err = r.uint(math.MaxUint64)
		case 2:
			v, err = r.uint(math.MaxUint32)
			i.Type = uint32(v)
		case 3:
			i.Parent, err = r.uint(math.MaxUint64)
		case 4:
			i.Name, err = r.str(maxPathLen)
		case 5:
			i.Handle = new(FileHandle)
			err = r.fileHandle(i.Handle)
		case 6:
			i.Unlinked, err = r.bool()
		case 7:
			i.Invalid, err = r.str(maxOptionText)
		case 8:
			i.Gone, err = r.bool()
		case 9:
			v, err = r.uint(math.MaxUint32)
			i.Lost = uint32(v)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", inodeFields[k], err)
		}
	}
	return present(inodeFields, 0b111, seen)
}

var fileHandleFields = []string{"mount_id", "type", "bytes"}

func (r *wireReader) fileHandle(h *FileHandle) error {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	var seen uint32
	for range n {
		k, err := r.field(fileHandleFields, &seen)
		if err != nil {
			return err
		}
		switch k {
		case 0:
			h.MountID, err = r.uint(math.MaxUint64)
		case 1:
			h.Type, err = r.int32()
		case 2:
			h.Bytes, err = r.bin(maxHandleBytes)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", fileHandleFields[k], err)
		}
	}
	return present(fileHandleFields, all(len(fileHandleFields)), seen)
}

// handleFields are Handle's keys; all but lost are always written.
var handleFields = []string{"id", "node", "flags", "guest_flags", "lost"}

func (r *wireReader) handle(h *Handle) error {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	var seen uint32
	for range n {
		k, err := r.field(handleFields, &seen)
		if err != nil {
			return err
		}
		var v uint64
		switch k {
		case 0:
			h.ID, err = r.uint(math.MaxUint64)
		case 1:
			h.Node, err = r.uint(math.MaxUint64)
		case 2:
			h.Flags, err = r.int32()
		case 3:
			v, err = r.uint(math.MaxUint32)
			h.GuestFlags = uint32(v)
		case 4:
			v, err = r.uint(math.MaxUint32)
			h.Lost = uint32(v)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", handleFields[k], err)
		}
	}
	return present(handleFields, 0b1111, seen)
}
