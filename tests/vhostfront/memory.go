package vhostfront

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Memory is guest memory: a memfd mapped by the front-end, shared with the
// back-end through SET_MEM_TABLE as one region.
//
// Guest addresses run from GuestBase to GuestBase+Size. The front-end's
// (user) address of the region is where this process mapped it, as with
// QEMU, unless the Memory was made with another one.
//
// Two allocators hand out guest memory: Alloc, a bump allocator from the
// bottom for things that live as long as the Memory (rings, tables), and
// Buffer, a circular allocator over the top half for request and reply
// buffers, which reuses space once it wraps around (keep less than half of
// the memory in flight).
type Memory struct {
	FD        int    // the memfd; owned by the Memory
	GuestBase uint64 // guest address of the first byte
	Size      uint64
	UserAddr  uint64 // the front-end's address of the region, sent in SET_MEM_TABLE

	data []byte // the mapping

	static    uint64 // next free offset of Alloc
	bufStart  uint64 // Buffer's area: [bufStart, Size)
	bufCursor uint64
}

// NewMemory creates a memfd of size bytes (a multiple of the page size),
// maps it and returns it as guest memory starting at guestBase.
func NewMemory(guestBase, size uint64) (*Memory, error) {
	if size == 0 || size%4096 != 0 || guestBase%4096 != 0 {
		return nil, fmt.Errorf("guest memory of %#x bytes at %#x: want page multiples", size, guestBase)
	}
	fd, err := unix.MemfdCreate("vhostfront-guest", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ftruncate memfd: %w", err)
	}
	data, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap memfd: %w", err)
	}
	m := &Memory{
		FD: fd, GuestBase: guestBase, Size: size,
		UserAddr: uint64(uintptr(unsafe.Pointer(&data[0]))),
		data:     data,
		static:   4096, // keep guest address GuestBase unused
		bufStart: size / 2,
	}
	m.bufCursor = m.bufStart
	return m, nil
}

// Close unmaps the memory and closes the memfd.
func (m *Memory) Close() error {
	if m.data != nil {
		unix.Munmap(m.data)
		m.data = nil
	}
	if m.FD >= 0 {
		unix.Close(m.FD)
		m.FD = -1
	}
	return nil
}

// Region returns the SET_MEM_TABLE region describing the whole memory.
func (m *Memory) Region() Region {
	return Region{GuestAddr: m.GuestBase, Size: m.Size, UserAddr: m.UserAddr}
}

// End returns the first guest address past the memory.
func (m *Memory) End() uint64 { return m.GuestBase + m.Size }

// Contains reports whether [addr, addr+n) is inside the memory.
func (m *Memory) Contains(addr, n uint64) bool {
	return addr >= m.GuestBase && addr-m.GuestBase <= m.Size && n <= m.Size-(addr-m.GuestBase)
}

// Bytes returns the host view of guest range [addr, addr+n); it panics if
// the range is outside the memory (a bug in the test).
func (m *Memory) Bytes(addr, n uint64) []byte {
	if !m.Contains(addr, n) {
		panic(fmt.Sprintf("vhostfront: guest range %#x+%#x outside memory %#x+%#x", addr, n, m.GuestBase, m.Size))
	}
	off := addr - m.GuestBase
	return m.data[off : off+n : off+n]
}

// ToUser translates a guest address to the front-end's address, as
// SET_VRING_ADDR wants it.
func (m *Memory) ToUser(guest uint64) uint64 { return guest - m.GuestBase + m.UserAddr }

// Alloc returns the guest address of n bytes aligned to align (a power of
// 2), zeroed, from the static area below the buffer area.
func (m *Memory) Alloc(n, align uint64) (uint64, error) {
	off := (m.static + align - 1) &^ (align - 1)
	if off+n > m.bufStart || off+n < off {
		return 0, fmt.Errorf("vhostfront: static guest memory exhausted (%d bytes wanted)", n)
	}
	m.static = off + n
	clear(m.data[off : off+n])
	return m.GuestBase + off, nil
}

// Buffer returns the guest address of n bytes (16-byte aligned) from the
// circular buffer area. The bytes are not cleared.
func (m *Memory) Buffer(n uint64) (uint64, error) {
	if n > m.Size-m.bufStart {
		return 0, fmt.Errorf("vhostfront: buffer of %d bytes larger than the buffer area", n)
	}
	off := (m.bufCursor + 15) &^ 15
	if off+n > m.Size {
		off = m.bufStart
	}
	m.bufCursor = off + n
	return m.GuestBase + off, nil
}

// Put copies b into a new buffer and returns its guest address.
func (m *Memory) Put(b []byte) (uint64, error) {
	addr, err := m.Buffer(uint64(len(b)))
	if err != nil {
		return 0, err
	}
	copy(m.Bytes(addr, uint64(len(b))), b)
	return addr, nil
}

// word returns the aligned 32-bit word of guest memory holding addr.
func (m *Memory) word(addr uint64) *uint32 {
	b := m.Bytes(addr&^3, 4)
	return (*uint32)(unsafe.Pointer(&b[0]))
}

// Load16 reads the little-endian u16 at guest address addr (2-aligned) with
// an atomic load: the back-end writes it concurrently.
func (m *Memory) Load16(addr uint64) uint16 {
	w := atomic.LoadUint32(m.word(addr))
	return uint16(w >> ((addr & 3) * 8))
}

// Store16 writes the u16 at guest address addr (2-aligned) with an atomic
// compare-and-swap of its word, leaving the other half alone and ordering
// the store after every earlier write (a full barrier on amd64).
func (m *Memory) Store16(addr uint64, v uint16) {
	p := m.word(addr)
	shift := (addr & 3) * 8
	for {
		old := atomic.LoadUint32(p)
		nw := old&^(0xffff<<shift) | uint32(v)<<shift
		if atomic.CompareAndSwapUint32(p, old, nw) {
			return
		}
	}
}
