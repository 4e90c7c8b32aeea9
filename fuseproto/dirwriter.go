package fuseproto

import (
	"encoding/binary"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// DirWriter encodes directory entries into a READDIR or READDIRPLUS reply.
// The request layer bounds it by the size the kernel asked for, so an entry
// that does not fit is simply left for the next READDIR, starting at the
// offset of the last entry that did.
//
// Names must be what a directory can hold: 1 to NameMax bytes without NUL or
// '/'. The kernel refuses a whole reply that holds any other.
type DirWriter struct {
	buf []byte
	n   int
}

// direntHeaderSize is struct fuse_dirent without its name.
const direntHeaderSize = 24

// direntSize is the space a fuse_dirent for a name of nameLen bytes takes:
// every entry starts 8-byte aligned.
func direntSize(nameLen int) int { return (direntHeaderSize + nameLen + 7) &^ 7 }

// direntPlusSize is the space a fuse_direntplus takes: a fuse_entry_out
// (itself a multiple of 8 bytes) followed by the fuse_dirent.
func direntPlusSize(nameLen int) int { return entryOutSize + direntSize(nameLen) }

// reset points w at buf, empty.
func (w *DirWriter) reset(buf []byte) {
	w.buf = buf
	w.n = 0
}

// Len is the number of bytes written so far.
func (w *DirWriter) Len() int { return w.n }

// fits reports whether size more bytes fit; nameLen is checked separately so
// that an absurd length cannot overflow the size computation.
func (w *DirWriter) fits(nameLen int, size func(int) int) bool {
	free := len(w.buf) - w.n
	return nameLen >= 0 && nameLen <= free && size(nameLen) <= free
}

// Add appends a fuse_dirent for name, with inode number ino, the file type
// taken from the S_IF* bits of mode, and off, the position to resume reading
// after this entry. It returns false, writing nothing, when the entry does
// not fit.
func (w *DirWriter) Add(name string, ino uint64, mode uint32, off uint64) bool {
	if !w.fits(len(name), direntSize) {
		return false
	}
	size := direntSize(len(name))
	putDirent(w.buf[w.n:w.n+size], name, ino, mode, off)
	w.n += size
	return true
}

// FitsPlus reports whether a direntplus with a name of nameLen bytes still
// fits; the filesystem checks it before it does the lookup that AddPlus
// records, so that no lookup is counted for an entry the kernel never sees.
func (w *DirWriter) FitsPlus(nameLen int) bool {
	return w.fits(nameLen, direntPlusSize)
}

// AddPlus appends a fuse_direntplus (entry, then the dirent whose inode
// number and type come from entry.Attr) for name, resuming at off. It returns
// false, writing nothing, when the entry does not fit. An entry with NodeId 0
// carries no lookup.
func (w *DirWriter) AddPlus(name string, entry *fuse.EntryOut, off uint64) bool {
	if !w.FitsPlus(len(name)) {
		return false
	}
	size := direntPlusSize(len(name))
	b := w.buf[w.n : w.n+size]
	copy(b, asBytes(entry))
	putDirent(b[entryOutSize:], name, entry.Ino, entry.Mode, off)
	w.n += size
	return true
}

// putDirent encodes a fuse_dirent into b, which is exactly its aligned size.
// The padding is zeroed: b is a reused buffer and must not carry bytes of an
// earlier reply to the guest.
func putDirent(b []byte, name string, ino uint64, mode uint32, off uint64) {
	ne := binary.NativeEndian
	ne.PutUint64(b[0:], ino)
	ne.PutUint64(b[8:], off)
	ne.PutUint32(b[16:], uint32(len(name)))
	ne.PutUint32(b[20:], (mode&syscall.S_IFMT)>>12) // DT_* = S_IFMT bits >> 12
	n := copy(b[direntHeaderSize:], name)
	clear(b[direntHeaderSize+n:])
}

// NewDirWriter returns a DirWriter that fills buf. The request layer makes
// its own for each READDIR; this is for code that drives a FileSystem
// directly, such as a filesystem's own tests.
func NewDirWriter(buf []byte) *DirWriter { return &DirWriter{buf: buf} }

// Bytes returns the entries encoded so far.
func (w *DirWriter) Bytes() []byte { return w.buf[:w.n] }
