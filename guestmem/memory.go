// Package guestmem maps the guest's memory that a vhost-user front-end
// shares with us and translates guest addresses into host byte slices.
//
// Every address and length comes from the guest or the front-end and is
// checked against the memory table before any byte is touched: a range that
// is not wholly inside mapped regions is an error, never an access outside
// them. Writes into guest memory are reported through MarkDirty, the one
// place where a dirty log (for live migration) is kept.
package guestmem

import (
	"errors"
	"fmt"
	"sort"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrOutOfRange is returned for a guest range outside the memory table.
var ErrOutOfRange = errors.New("guest address range outside mapped memory")

// RegionSpec describes one region as VHOST_USER_SET_MEM_TABLE or
// ADD_MEM_REG send it.
type RegionSpec struct {
	GuestAddr  uint64
	Size       uint64
	UserAddr   uint64 // the front-end's virtual address of the region
	MmapOffset uint64
	FD         int
}

// Region is a mapped region.
type Region struct {
	RegionSpec
	data    []byte // the region's bytes, data[0] is GuestAddr
	mapping []byte // what mmap returned, for munmap
}

// Memory is an immutable memory table. A new table replaces the old one
// wholesale (see Table), so readers never see a half-updated one.
type Memory struct {
	regions []*Region // sorted by GuestAddr, non-overlapping
}

// maxRegionSize keeps mmap lengths and address sums far from overflow.
const maxRegionSize = 1 << 46

// Map maps each region's file descriptor and returns the table. It takes
// ownership of the descriptors: they are closed once mapped, or on error.
// Overlapping guest ranges, zero sizes and ranges that wrap are refused.
func Map(specs []RegionSpec) (*Memory, error) {
	m := &Memory{}
	defer func() {
		for _, s := range specs {
			if s.FD >= 0 {
				unix.Close(s.FD)
			}
		}
	}()
	for _, s := range specs {
		r, err := mapRegion(s)
		if err != nil {
			m.Unmap()
			return nil, err
		}
		m.regions = append(m.regions, r)
	}
	if err := m.sortAndCheck(); err != nil {
		m.Unmap()
		return nil, err
	}
	return m, nil
}

func mapRegion(s RegionSpec) (*Region, error) {
	if s.Size == 0 || s.Size > maxRegionSize || s.MmapOffset > maxRegionSize {
		return nil, fmt.Errorf("memory region at %#x: bad size %#x or offset %#x", s.GuestAddr, s.Size, s.MmapOffset)
	}
	if s.GuestAddr+s.Size < s.GuestAddr || s.UserAddr+s.Size < s.UserAddr {
		return nil, fmt.Errorf("memory region at %#x size %#x wraps around", s.GuestAddr, s.Size)
	}
	// Touching a mapping past the end of its file raises SIGBUS, which
	// would kill the daemon: refuse a region its file does not cover.
	// Guest memory is a regular file (memfd, tmpfs, hugetlbfs); other
	// kinds have no size to check.
	var st unix.Stat_t
	if err := unix.Fstat(s.FD, &st); err != nil {
		return nil, fmt.Errorf("memory region at %#x: %w", s.GuestAddr, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && uint64(st.Size) < s.MmapOffset+s.Size {
		return nil, fmt.Errorf("memory region at %#x: offset %#x + size %#x is past the end of its file (%#x bytes)",
			s.GuestAddr, s.MmapOffset, s.Size, st.Size)
	}
	// The offset need not be page aligned: map from the start of the file
	// and skip it, as other back-ends do.
	mapping, err := unix.Mmap(s.FD, 0, int(s.Size+s.MmapOffset), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("mmap memory region at %#x size %#x: %w", s.GuestAddr, s.Size, err)
	}
	return &Region{RegionSpec: s, data: mapping[s.MmapOffset:], mapping: mapping}, nil
}

func (m *Memory) sortAndCheck() error {
	sort.Slice(m.regions, func(i, j int) bool { return m.regions[i].GuestAddr < m.regions[j].GuestAddr })
	for i := 1; i < len(m.regions); i++ {
		prev, cur := m.regions[i-1], m.regions[i]
		if prev.GuestAddr+prev.Size > cur.GuestAddr {
			return fmt.Errorf("memory regions at %#x and %#x overlap", prev.GuestAddr, cur.GuestAddr)
		}
	}
	return nil
}

// With returns a new table with one more region (ADD_MEM_REG). The region
// must not overlap existing ones. m keeps its regions; the new table shares
// them.
func (m *Memory) With(s RegionSpec) (*Memory, error) {
	r, err := mapRegion(s)
	unix.Close(s.FD)
	if err != nil {
		return nil, err
	}
	n := &Memory{regions: append(append([]*Region(nil), m.regions...), r)}
	if err := n.sortAndCheck(); err != nil {
		unix.Munmap(r.mapping)
		return nil, err
	}
	return n, nil
}

// Without returns a new table without the region matching s's guest
// address, size and user address (REM_MEM_REG), and that region so the
// caller can unmap it once nobody uses the old table.
func (m *Memory) Without(s RegionSpec) (*Memory, *Region, error) {
	for i, r := range m.regions {
		if r.GuestAddr == s.GuestAddr && r.Size == s.Size && r.UserAddr == s.UserAddr {
			rest := append(append([]*Region(nil), m.regions[:i]...), m.regions[i+1:]...)
			return &Memory{regions: rest}, r, nil
		}
	}
	return nil, nil, fmt.Errorf("no memory region at %#x size %#x", s.GuestAddr, s.Size)
}

// Unmap unmaps every region. Only call it when no reader can still use m.
func (m *Memory) Unmap() {
	if m == nil {
		return
	}
	for _, r := range m.regions {
		r.unmap()
	}
	m.regions = nil
}

func (r *Region) unmap() {
	if r.mapping != nil {
		unix.Munmap(r.mapping)
		r.mapping, r.data = nil, nil
	}
}

// Unmap unmaps the region (see Without).
func (r *Region) Unmap() { r.unmap() }

// Regions returns the number of regions.
func (m *Memory) Regions() int { return len(m.regions) }

// find returns the region holding guest address addr.
func (m *Memory) find(addr uint64) *Region {
	rs := m.regions
	i := sort.Search(len(rs), func(i int) bool { return rs[i].GuestAddr+rs[i].Size > addr })
	if i < len(rs) && rs[i].GuestAddr <= addr {
		return rs[i]
	}
	return nil
}

// Slice returns the host bytes of the guest range [addr, addr+n) when it
// lies within one region, which is what ring structures and most buffers
// do.
func (m *Memory) Slice(addr, n uint64) ([]byte, error) {
	r := m.find(addr)
	if r == nil {
		return nil, ErrOutOfRange
	}
	off := addr - r.GuestAddr
	if n > r.Size-off {
		return nil, ErrOutOfRange
	}
	return r.data[off : off+n : off+n], nil
}

// AppendSlices appends the host bytes of the guest range [addr, addr+n) to
// dst, one slice per region it crosses (a buffer may straddle two adjacent
// regions). At most limit slices are appended; more is an error.
func (m *Memory) AppendSlices(dst [][]byte, addr, n uint64, limit int) ([][]byte, error) {
	if addr+n < addr {
		return dst, ErrOutOfRange
	}
	for n > 0 {
		if limit <= 0 {
			return dst, fmt.Errorf("guest buffer crosses too many memory regions")
		}
		r := m.find(addr)
		if r == nil {
			return dst, ErrOutOfRange
		}
		off := addr - r.GuestAddr
		k := min(n, r.Size-off)
		dst = append(dst, r.data[off:off+k:off+k])
		addr += k
		n -= k
		limit--
	}
	return dst, nil
}

// UserToGuest translates a front-end virtual address (as the vring address
// messages carry) to a guest address, checking that the n bytes from there
// are inside one region.
func (m *Memory) UserToGuest(uaddr, n uint64) (uint64, error) {
	for _, r := range m.regions {
		if uaddr >= r.UserAddr && uaddr-r.UserAddr < r.Size {
			off := uaddr - r.UserAddr
			if n > r.Size-off {
				return 0, ErrOutOfRange
			}
			return r.GuestAddr + off, nil
		}
	}
	return 0, ErrOutOfRange
}

// Table holds the current memory table. Requests load it once and use that
// table to the end, so a table replaced meanwhile stays mapped until
// released (see Retire).
type Table struct {
	cur atomic.Pointer[Memory]
}

// Load returns the current table (nil before SET_MEM_TABLE).
func (t *Table) Load() *Memory { return t.cur.Load() }

// Store installs m and returns the previous table.
func (t *Table) Store(m *Memory) *Memory { return t.cur.Swap(m) }
