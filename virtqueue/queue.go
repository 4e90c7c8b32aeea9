// Package virtqueue is the device side of a virtio split virtqueue living in
// guest memory: it takes descriptor chains the driver made available and
// returns them as used.
//
// The guest writes the rings concurrently with us and is not trusted. Every
// ring field is read once into a local value; every index is checked against
// the queue size; every buffer is translated through the memory table, which
// refuses ranges outside guest memory; a chain is bounded in length, may not
// loop, may not nest indirect tables and must put device-readable buffers
// before device-writable ones. A bad chain is returned to the driver as used
// with nothing written, except one whose head does not exist, which cannot
// be named in the used ring and is skipped; only a ring that cannot be
// followed at all (its available index makes no sense) stops the queue.
package virtqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/ferryfs/ferryfs/guestmem"
)

// Descriptor flags.
const (
	descNext     = 1
	descWrite    = 2
	descIndirect = 4
)

// Ring flags.
const (
	availNoInterrupt = 1
	usedNoNotify     = 1
)

// MaxSize is the largest queue size the virtio spec allows.
const MaxSize = 32768

// maxSlicesPerBuffer bounds how many memory regions one descriptor's buffer
// may cross.
const maxSlicesPerBuffer = 4

// ErrBrokenRing means the driver's ring indices make no sense; the queue
// cannot be processed any further.
var ErrBrokenRing = errors.New("virtqueue broken")

// ErrInvalidHead is wrapped by Chain.Err for an available entry naming a
// descriptor that does not exist. There is nothing to return for it: Push
// ignores such a chain, and the next entries are served as usual (as
// virtiofsd does).
var ErrInvalidHead = errors.New("available head out of range")

// Config describes a queue as the front-end set it up.
type Config struct {
	Size      uint16 // number of descriptors, a power of 2
	DescAddr  uint64 // guest addresses
	AvailAddr uint64
	UsedAddr  uint64
	// EventIdx is VIRTIO_RING_F_EVENT_IDX; Indirect is
	// VIRTIO_RING_F_INDIRECT_DESC.
	EventIdx bool
	Indirect bool
	// LastAvail is where processing starts (SET_VRING_BASE).
	LastAvail uint16
}

// Queue is one split virtqueue. Pop is for a single consumer; Push may be
// called from many goroutines.
type Queue struct {
	cfg Config
	mem *guestmem.Memory

	desc  []byte // the descriptor table, 16 bytes per entry
	avail []byte // flags, idx, ring[size], used_event
	used  []byte // flags, idx, ring[size] of {id, len}, avail_event

	lastAvail uint16 // next available entry to take; only Pop touches it

	pushMu  sync.Mutex
	usedIdx uint16 // protected by pushMu
	log     atomic.Pointer[UsedLog]
}

// UsedLog is where writes to the used ring are logged during migration: the
// dirty log, and the guest address that logging of the used ring is relative
// to (VHOST_VRING_F_LOG's log_guest_addr).
type UsedLog struct {
	Log       *guestmem.DirtyLog
	UsedAddr  uint64
	LogBuffer bool // also log data written into buffers
}

// New checks cfg against mem and returns the queue.
func New(cfg Config, mem *guestmem.Memory) (*Queue, error) {
	n := uint64(cfg.Size)
	if n == 0 || n > MaxSize || n&(n-1) != 0 {
		return nil, fmt.Errorf("queue size %d is not a power of 2 up to %d", n, MaxSize)
	}
	if cfg.DescAddr%16 != 0 || cfg.AvailAddr%2 != 0 || cfg.UsedAddr%4 != 0 {
		return nil, fmt.Errorf("misaligned ring addresses desc %#x avail %#x used %#x", cfg.DescAddr, cfg.AvailAddr, cfg.UsedAddr)
	}
	q := &Queue{cfg: cfg, mem: mem, lastAvail: cfg.LastAvail}
	var err error
	if q.desc, err = mem.Slice(cfg.DescAddr, 16*n); err != nil {
		return nil, fmt.Errorf("descriptor table: %w", err)
	}
	if q.avail, err = mem.Slice(cfg.AvailAddr, 6+2*n); err != nil {
		return nil, fmt.Errorf("available ring: %w", err)
	}
	if q.used, err = mem.Slice(cfg.UsedAddr, 6+8*n); err != nil {
		return nil, fmt.Errorf("used ring: %w", err)
	}
	// The ring indices are read and written with aligned 32-bit atomics
	// (load16, storeUsedIdx), which need the host addresses aligned too;
	// aligned guest addresses do not make them so when a region's mmap
	// offset or guest address is not aligned. Unaligned, a load16 at the
	// end of a word would read half the index, and an atomic would split
	// a cache line (x86) or fault (other architectures).
	if uintptrOf(&q.desc[0])%16 != 0 || uintptrOf(&q.avail[0])%2 != 0 || uintptrOf(&q.used[0])%4 != 0 {
		return nil, fmt.Errorf("misaligned ring addresses in host memory (desc %#x avail %#x used %#x): a memory region's offset or guest address is misaligned",
			cfg.DescAddr, cfg.AvailAddr, cfg.UsedAddr)
	}
	// The used index lives in guest memory; a migration destination picks
	// up where the source left it.
	q.usedIdx = q.loadUsedIdx()
	return q, nil
}

// Size returns the queue size.
func (q *Queue) Size() uint16 { return q.cfg.Size }

// LastAvail returns the index of the next available entry (what
// GET_VRING_BASE reports once the queue is stopped and drained).
func (q *Queue) LastAvail() uint16 { return q.lastAvail }

// SetLog turns logging of used-ring writes on (l non-nil) or off.
func (q *Queue) SetLog(l *UsedLog) { q.log.Store(l) }

// load16 reads a little-endian u16 at b[off] with one atomic 32-bit load of
// the aligned word holding it, so the compiler neither splits nor repeats
// the read and it is ordered before what the caller reads next.
func load16(b []byte, off int) uint16 {
	p := unsafe.Pointer(&b[off])
	mis := uintptr(p) & 3
	w := atomic.LoadUint32((*uint32)(unsafe.Add(p, -int(mis))))
	return uint16(w >> (mis * 8))
}

func uintptrOf(b *byte) uintptr { return uintptr(unsafe.Pointer(b)) }

func (q *Queue) availIdx() uint16   { return load16(q.avail, 2) }
func (q *Queue) availFlags() uint16 { return load16(q.avail, 0) }
func (q *Queue) usedEvent() uint16  { return load16(q.avail, 4+2*int(q.cfg.Size)) }
func (q *Queue) loadUsedIdx() uint16 {
	return uint16(atomic.LoadUint32((*uint32)(unsafe.Pointer(&q.used[0]))) >> 16)
}

// storeUsedIdx publishes idx with one release store of the used ring's
// flags+idx word (the device owns both halves).
func (q *Queue) storeUsedIdx(idx uint16) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&q.used[0])), uint32(idx)<<16)
}

// Chain is a descriptor chain taken from the queue. Its slices point into
// guest memory; they are valid while the memory table it came from is.
type Chain struct {
	Head uint16
	// Readable and Writable are the device-readable and device-writable
	// buffers, in chain order.
	Readable [][]byte
	Writable [][]byte
	// Err is set for a chain that broke the rules; it is to be returned as
	// used with nothing written.
	Err error

	writableSpans []span // guest ranges of Writable, for dirty logging
}

type span struct{ addr, len uint64 }

func (c *Chain) reset(head uint16) {
	c.Head = head
	c.Readable = c.Readable[:0]
	c.Writable = c.Writable[:0]
	c.writableSpans = c.writableSpans[:0]
	c.Err = nil
}

// WritableLen is the total size of the writable buffers.
func (c *Chain) WritableLen() int {
	n := 0
	for _, b := range c.Writable {
		n += len(b)
	}
	return n
}

// Pop takes the next available chain into c and reports whether there was
// one. A chain that breaks the rules comes back with c.Err set. An error
// return means the ring itself is broken.
func (q *Queue) Pop(c *Chain) (bool, error) {
	avail := q.availIdx()
	pending := avail - q.lastAvail
	if pending == 0 {
		return false, nil
	}
	if pending > q.cfg.Size {
		return false, fmt.Errorf("%w: available index %d is %d entries ahead of %d, queue size %d",
			ErrBrokenRing, avail, pending, q.lastAvail, q.cfg.Size)
	}
	slot := int(q.lastAvail % q.cfg.Size)
	head := binary.LittleEndian.Uint16(q.avail[4+2*slot:])
	q.lastAvail++
	c.reset(head)
	if head >= q.cfg.Size {
		c.Err = fmt.Errorf("%w: %d, queue size %d", ErrInvalidHead, head, q.cfg.Size)
		return true, nil
	}
	c.Err = q.walk(c, head)
	return true, nil
}

type descriptor struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func readDesc(table []byte, i uint16) descriptor {
	b := table[16*int(i) : 16*int(i)+16]
	return descriptor{
		addr:  binary.LittleEndian.Uint64(b),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}
}

// walk follows the chain from head, filling c.
func (q *Queue) walk(c *Chain, head uint16) error {
	table, tableSize := q.desc, q.cfg.Size
	indirect := false
	i := head
	// A chain visits each descriptor at most once, so it is never longer
	// than its table; counting catches loops.
	for count := 0; ; count++ {
		if count >= int(tableSize) {
			return fmt.Errorf("descriptor chain from %d longer than its table (%d): a loop", head, tableSize)
		}
		d := readDesc(table, i)
		if d.flags&descIndirect != 0 {
			switch {
			case !q.cfg.Indirect:
				return fmt.Errorf("indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC")
			case indirect:
				return fmt.Errorf("indirect descriptor inside an indirect table")
			case d.flags&descNext != 0:
				return fmt.Errorf("indirect descriptor with NEXT set")
			case d.len == 0 || d.len%16 != 0 || d.len/16 > MaxSize:
				return fmt.Errorf("indirect table of %d bytes", d.len)
			}
			t, err := q.mem.Slice(d.addr, uint64(d.len))
			if err != nil {
				return fmt.Errorf("indirect table at %#x: %w", d.addr, err)
			}
			table, tableSize, indirect = t, uint16(d.len/16), true
			i, count = 0, -1
			continue
		}
		if err := q.addBuffer(c, d); err != nil {
			return err
		}
		if d.flags&descNext == 0 {
			return nil
		}
		if d.next >= tableSize {
			return fmt.Errorf("descriptor next %d out of range %d", d.next, tableSize)
		}
		i = d.next
	}
}

func (q *Queue) addBuffer(c *Chain, d descriptor) error {
	var err error
	if d.flags&descWrite != 0 {
		n := len(c.Writable)
		if c.Writable, err = q.mem.AppendSlices(c.Writable, d.addr, uint64(d.len), maxSlicesPerBuffer); err != nil {
			c.Writable = c.Writable[:n]
			return fmt.Errorf("writable buffer at %#x len %d: %w", d.addr, d.len, err)
		}
		if d.len > 0 {
			c.writableSpans = append(c.writableSpans, span{d.addr, uint64(d.len)})
		}
		return nil
	}
	if len(c.Writable) > 0 {
		return fmt.Errorf("device-readable buffer after a device-writable one")
	}
	n := len(c.Readable)
	if c.Readable, err = q.mem.AppendSlices(c.Readable, d.addr, uint64(d.len), maxSlicesPerBuffer); err != nil {
		c.Readable = c.Readable[:n]
		return fmt.Errorf("readable buffer at %#x len %d: %w", d.addr, d.len, err)
	}
	return nil
}

// Push returns chain c to the driver with written bytes of its writable
// buffers filled, and reports whether the driver wants an interrupt for it.
// A chain whose head is out of range (ErrInvalidHead) is not returned.
func (q *Queue) Push(c *Chain, written uint32) (notify bool) {
	if c.Head >= q.cfg.Size {
		return false
	}
	if max := c.WritableLen(); int(written) > max {
		written = uint32(max)
	}
	l := q.log.Load()
	if l != nil && l.LogBuffer {
		q.logWritten(l, c, uint64(written))
	}
	// Unlocked by a defer: writing the used ring or marking the log may
	// fault (a front-end that shrank guest memory or the log), and the
	// back-end recovers from that; a lock left held would then block
	// every other chain being returned, and whoever waits for them.
	q.pushMu.Lock()
	defer q.pushMu.Unlock()
	old := q.usedIdx
	slot := int(old % q.cfg.Size)
	elem := q.used[4+8*slot : 4+8*slot+8]
	binary.LittleEndian.PutUint32(elem, uint32(c.Head))
	binary.LittleEndian.PutUint32(elem[4:], written)
	q.usedIdx = old + 1
	// The element must be visible before the index that publishes it;
	// the atomic store orders them. It is also a full barrier, which the
	// read of used_event below needs (a store followed by a load).
	q.storeUsedIdx(q.usedIdx)
	if l != nil {
		l.Log.Mark(l.UsedAddr+4+8*uint64(slot), 8)
		l.Log.Mark(l.UsedAddr+2, 2)
	}
	return q.needsNotify(old, q.usedIdx)
}

func (q *Queue) logWritten(l *UsedLog, c *Chain, n uint64) {
	for _, s := range c.writableSpans {
		if n == 0 {
			return
		}
		k := min(n, s.len)
		l.Log.Mark(s.addr, k)
		n -= k
	}
}

// needsNotify decides whether moving the used index from old to new calls
// for an interrupt.
func (q *Queue) needsNotify(old, new uint16) bool {
	if !q.cfg.EventIdx {
		return q.availFlags()&availNoInterrupt == 0
	}
	// vring_need_event: notify when used_event lies in [old, new).
	event := q.usedEvent()
	return new-event-1 < new-old
}

// HasAvailable reports whether chains are waiting.
func (q *Queue) HasAvailable() bool { return q.availIdx() != q.lastAvail }

// ArmNotify asks the driver to kick for the next chain it makes available
// and reports whether chains arrived meanwhile (in which case the caller
// must keep popping rather than wait for a kick that may never come).
func (q *Queue) ArmNotify() (moreArrived bool) {
	if q.cfg.EventIdx {
		off := 4 + 8*int(q.cfg.Size)
		q.pushMu.Lock()
		defer q.pushMu.Unlock() // see Push
		// avail_event shares a 32-bit word with nothing of ours only when
		// aligned; write the u16 with a plain store, then fence with the
		// atomic used-index store (a full barrier) before re-reading.
		binary.LittleEndian.PutUint16(q.used[off:], q.lastAvail)
		q.storeUsedIdx(q.usedIdx)
		if l := q.log.Load(); l != nil {
			l.Log.Mark(l.UsedAddr+uint64(off), 2)
		}
	}
	return q.HasAvailable()
}
