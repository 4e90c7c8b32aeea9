package guestmem

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// LogPageSize is the size of the pages the dirty log tracks
// (VHOST_LOG_PAGE).
const LogPageSize = 0x1000

// DirtyLog is the bitmap shared with the front-end during live migration:
// one bit per guest page, set when we write into that page.
type DirtyLog struct {
	mapping []byte
	bits    []byte
}

// MapDirtyLog maps size bytes of the log at offset in fd (SET_LOG_BASE). It
// takes ownership of fd.
func MapDirtyLog(fd int, size, offset uint64) (*DirtyLog, error) {
	defer unix.Close(fd)
	if size == 0 || size > 1<<40 || offset > 1<<40 {
		return nil, fmt.Errorf("dirty log: bad size %#x or offset %#x", size, offset)
	}
	// As for guest memory (see mapRegion): marking a page past the end of
	// the file would raise SIGBUS.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("dirty log: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && uint64(st.Size) < offset+size {
		return nil, fmt.Errorf("dirty log: offset %#x + size %#x is past the end of its file (%#x bytes)", offset, size, st.Size)
	}
	mapping, err := unix.Mmap(fd, 0, int(size+offset), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap dirty log: %w", err)
	}
	return &DirtyLog{mapping: mapping, bits: mapping[offset:]}, nil
}

// Mark sets the bits of every page in the guest range [addr, addr+n). Bits
// past the end of the log are ignored: the front-end sizes the log for all
// of guest memory, so they can only come from a range we already refused.
// So is a range that wraps around the address space (no translation gives
// one).
func (l *DirtyLog) Mark(addr, n uint64) {
	if l == nil || n == 0 {
		return
	}
	first, last := addr/LogPageSize, (addr+n-1)/LogPageSize
	for page := first; page <= last; page++ {
		i := page / 8
		if i >= uint64(len(l.bits)) {
			return
		}
		orByte(&l.bits[i], 1<<(page%8))
	}
}

// orByte ORs bit into *b atomically: the front-end and our other workers
// update the same log concurrently.
func orByte(b *byte, bit byte) {
	// Go has no 8-bit atomic OR; do it on the aligned 32-bit word.
	// The log is mapped page aligned, so the word lies inside the mapping.
	misalign := uintptr(unsafe.Pointer(b)) & 3
	word := (*uint32)(unsafe.Add(unsafe.Pointer(b), -int(misalign)))
	shift := misalign * 8
	atomic.OrUint32(word, uint32(bit)<<shift)
}

// Unmap releases the log.
func (l *DirtyLog) Unmap() {
	if l != nil && l.mapping != nil {
		unix.Munmap(l.mapping)
		l.mapping, l.bits = nil, nil
	}
}
