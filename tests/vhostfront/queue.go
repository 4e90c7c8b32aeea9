package vhostfront

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Descriptor flags.
const (
	DescNext     uint16 = 1
	DescWrite    uint16 = 2
	DescIndirect uint16 = 4
)

// AvailNoInterrupt is VRING_AVAIL_F_NO_INTERRUPT.
const AvailNoInterrupt uint16 = 1

// Desc is one split-ring descriptor.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

func (d Desc) put(b []byte) {
	binary.LittleEndian.PutUint64(b, d.Addr)
	binary.LittleEndian.PutUint32(b[8:], d.Len)
	binary.LittleEndian.PutUint16(b[12:], d.Flags)
	binary.LittleEndian.PutUint16(b[14:], d.Next)
}

// UsedElem is an entry of the used ring.
type UsedElem struct {
	ID  uint32 // head of the returned chain
	Len uint32 // bytes the device wrote
}

// Queue is the driver side of one split virtqueue in Memory. Its rings
// live in guest memory; the back-end learns of them through SET_VRING_*.
//
// Descriptors are handed out from a free list by AllocDescs and the
// high-level Submit; a test writing descriptors by hand should take them
// from AllocDescs too, so that they do not clash.
type Queue struct {
	Mem   *Memory
	Index int    // queue index on the device
	Size  uint16 // number of descriptors
	// Guest addresses of the descriptor table, available and used rings.
	DescAddr, AvailAddr, UsedAddr uint64
	// EventIdx is whether VIRTIO_RING_F_EVENT_IDX was negotiated; the
	// queue then keeps used_event pointing at the next used entry.
	EventIdx bool
	// KickFD, CallFD and ErrFD are this side's copies of the eventfds
	// sent with SET_VRING_KICK, SET_VRING_CALL and SET_VRING_ERR.
	KickFD, CallFD, ErrFD int
	// Timeout bounds Wait; zero means 10 seconds.
	Timeout time.Duration

	availIdx uint16 // next available index to publish
	usedIdx  uint16 // next used index to consume
	free     []uint16
	chains   map[uint16][]uint16 // head -> descriptors, for Submit's chains
}

// NewQueue lays out a queue of size descriptors (a power of 2) in mem and
// creates its eventfds. It does not tell the back-end; see
// Frontend.StartQueue.
func NewQueue(mem *Memory, index int, size uint16) (*Queue, error) {
	if size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("vhostfront: queue size %d is not a power of 2", size)
	}
	n := uint64(size)
	q := &Queue{Mem: mem, Index: index, Size: size, KickFD: -1, CallFD: -1, ErrFD: -1, chains: map[uint16][]uint16{}}
	var err error
	if q.DescAddr, err = mem.Alloc(16*n, 4096); err != nil {
		return nil, err
	}
	if q.AvailAddr, err = mem.Alloc(6+2*n, 4); err != nil {
		return nil, err
	}
	if q.UsedAddr, err = mem.Alloc(6+8*n, 4096); err != nil {
		return nil, err
	}
	if q.KickFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if q.CallFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		q.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if q.ErrFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		q.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for i := uint16(0); i < size; i++ {
		q.free = append(q.free, i)
	}
	return q, nil
}

// Close closes the queue's eventfds.
func (q *Queue) Close() {
	for _, fd := range []*int{&q.KickFD, &q.CallFD, &q.ErrFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// Addr returns the SET_VRING_ADDR description of the queue (user
// addresses).
func (q *Queue) Addr() VringAddr {
	return VringAddr{
		Index: uint32(q.Index),
		Desc:  q.Mem.ToUser(q.DescAddr), Used: q.Mem.ToUser(q.UsedAddr), Avail: q.Mem.ToUser(q.AvailAddr),
	}
}

// SetDesc writes descriptor i of the queue's descriptor table. Any index is
// accepted as long as it lies in the table.
func (q *Queue) SetDesc(i uint16, d Desc) {
	d.put(q.Mem.Bytes(q.DescAddr+16*uint64(i), 16))
}

// WriteTable writes descs as a descriptor table (an indirect table) at guest
// address addr.
func (q *Queue) WriteTable(addr uint64, descs []Desc) {
	b := q.Mem.Bytes(addr, 16*uint64(len(descs)))
	for i, d := range descs {
		d.put(b[16*i:])
	}
}

// AllocDescs takes n descriptors off the free list.
func (q *Queue) AllocDescs(n int) ([]uint16, error) {
	if n > len(q.free) {
		return nil, fmt.Errorf("vhostfront: queue %d: %d descriptors wanted, %d free", q.Index, n, len(q.free))
	}
	ids := append([]uint16(nil), q.free[:n]...)
	q.free = q.free[n:]
	return ids, nil
}

// FreeDescs puts descriptors back on the free list.
func (q *Queue) FreeDescs(ids []uint16) { q.free = append(q.free, ids...) }

// AvailIdx returns the next available index the queue will publish.
func (q *Queue) AvailIdx() uint16 { return q.availIdx }

// SetAvailEntry writes head into available ring slot (idx mod Size) without
// publishing it.
func (q *Queue) SetAvailEntry(idx uint16, head uint16) {
	slot := uint64(idx % q.Size)
	binary.LittleEndian.PutUint16(q.Mem.Bytes(q.AvailAddr+4+2*slot, 2), head)
}

// StoreAvailIdx publishes idx as the available index (a release store) and
// makes it the queue's own idea of it. Any value is accepted.
func (q *Queue) StoreAvailIdx(idx uint16) {
	q.Mem.Store16(q.AvailAddr+2, idx)
	q.availIdx = idx
}

// SetAvailFlags writes the available ring's flags (AvailNoInterrupt).
func (q *Queue) SetAvailFlags(flags uint16) { q.Mem.Store16(q.AvailAddr, flags) }

// Publish makes the chains starting at heads available, in order, and
// kicks the device.
func (q *Queue) Publish(heads ...uint16) error {
	q.setUsedEvent()
	idx := q.availIdx
	for _, h := range heads {
		q.SetAvailEntry(idx, h)
		idx++
	}
	q.StoreAvailIdx(idx)
	return q.Kick()
}

// Kick signals the kick eventfd.
func (q *Queue) Kick() error {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	for {
		_, err := unix.Write(q.KickFD, one[:])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN { // counter saturated: the device will look anyway
			return nil
		}
		if err != nil {
			return fmt.Errorf("kick queue %d: %w", q.Index, err)
		}
		return nil
	}
}

// WaitError waits up to timeout for the back-end to signal the queue's
// error eventfd (SET_VRING_ERR) and returns the count it wrote, 0 when it
// wrote nothing in time.
func (q *Queue) WaitError(timeout time.Duration) (uint64, error) {
	pfd := []unix.PollFd{{Fd: int32(q.ErrFD), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		n, err := unix.Poll(pfd, int(left/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("poll error eventfd: %w", err)
		}
		if n == 0 {
			return 0, nil
		}
		var b [8]byte
		if _, err := unix.Read(q.ErrFD, b[:]); err != nil {
			return 0, fmt.Errorf("read error eventfd: %w", err)
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
}

// UsedIdx returns the device's used index as it is in guest memory now.
func (q *Queue) UsedIdx() uint16 { return q.Mem.Load16(q.UsedAddr + 2) }

// Consumed returns the next used index the queue has not consumed yet.
func (q *Queue) Consumed() uint16 { return q.usedIdx }

// setUsedEvent asks (with EVENT_IDX) for an interrupt when the next used
// entry we wait for is written.
func (q *Queue) setUsedEvent() {
	if q.EventIdx {
		q.Mem.Store16(q.AvailAddr+4+2*uint64(q.Size), q.usedIdx)
	}
}

func (q *Queue) timeout() time.Duration {
	if q.Timeout > 0 {
		return q.Timeout
	}
	return 10 * time.Second
}

// ErrNoInterrupt is wrapped by Wait's error when the used ring moved but
// no interrupt came.
var ErrNoInterrupt = errors.New("used ring advanced without an interrupt")

// Wait waits for the next used entry and consumes it. It waits on the call
// eventfd, so a device that forgets to interrupt makes it time out (with
// ErrNoInterrupt when the entry is there nonetheless).
func (q *Queue) Wait() (UsedElem, error) {
	return q.WaitTimeout(q.timeout())
}

// WaitTimeout is Wait with an explicit timeout.
func (q *Queue) WaitTimeout(timeout time.Duration) (UsedElem, error) {
	deadline := time.Now().Add(timeout)
	for {
		q.setUsedEvent()
		if q.UsedIdx() != q.usedIdx {
			return q.take(), nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			if q.UsedIdx() != q.usedIdx {
				return UsedElem{}, fmt.Errorf("queue %d: %w", q.Index, ErrNoInterrupt)
			}
			return UsedElem{}, fmt.Errorf("queue %d: no used entry %d after %v: %w", q.Index, q.usedIdx, timeout, ErrTimeout)
		}
		pfd := []unix.PollFd{{Fd: int32(q.CallFD), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return UsedElem{}, fmt.Errorf("poll call eventfd: %w", err)
		}
		if n > 0 {
			var b [8]byte
			unix.Read(q.CallFD, b[:])
			if q.UsedIdx() == q.usedIdx {
				continue // an interrupt for an entry already consumed
			}
			return q.take(), nil
		}
	}
}

// take consumes used entry q.usedIdx.
func (q *Queue) take() UsedElem {
	slot := uint64(q.usedIdx % q.Size)
	b := q.Mem.Bytes(q.UsedAddr+4+8*slot, 8)
	e := UsedElem{ID: binary.LittleEndian.Uint32(b), Len: binary.LittleEndian.Uint32(b[4:])}
	q.usedIdx++
	return e
}

// Pending reports whether the used ring holds entries not consumed yet.
func (q *Queue) Pending() bool { return q.UsedIdx() != q.usedIdx }

// ChainOptions shape the descriptor chain Submit builds.
type ChainOptions struct {
	// Indirect puts the whole chain in an indirect table referred to by a
	// single descriptor of the ring.
	Indirect bool
	// Split cuts the readable bytes into descriptors of at most Split
	// bytes (0: one descriptor per readable buffer).
	Split int
}

// Submission is a chain Submit made available.
type Submission struct {
	Head     uint16
	Writable []Desc // the writable buffers, in order, for reading the reply
}

// Submit builds a chain holding the readable buffers (device-readable)
// followed by writable buffers of the given sizes (device-writable),
// publishes it and kicks. The writable buffers are filled with 0xa5 so that
// a test can see what the device did not write.
func (q *Queue) Submit(readable [][]byte, writable []int, opt ChainOptions) (*Submission, error) {
	var descs []Desc
	for _, r := range readable {
		for first := true; first || len(r) > 0; first = false {
			k := len(r)
			if opt.Split > 0 && k > opt.Split {
				k = opt.Split
			}
			addr, err := q.Mem.Put(r[:k])
			if err != nil {
				return nil, err
			}
			descs = append(descs, Desc{Addr: addr, Len: uint32(k)})
			r = r[k:]
		}
	}
	sub := &Submission{}
	for _, n := range writable {
		addr, err := q.Mem.Buffer(uint64(n))
		if err != nil {
			return nil, err
		}
		b := q.Mem.Bytes(addr, uint64(n))
		for i := range b {
			b[i] = 0xa5
		}
		d := Desc{Addr: addr, Len: uint32(n), Flags: DescWrite}
		descs = append(descs, d)
		sub.Writable = append(sub.Writable, d)
	}
	if len(descs) == 0 {
		return nil, errors.New("vhostfront: empty chain")
	}
	if opt.Indirect {
		table, err := q.Mem.Buffer(16 * uint64(len(descs)))
		if err != nil {
			return nil, err
		}
		for i := range descs {
			if i+1 < len(descs) {
				descs[i].Flags |= DescNext
				descs[i].Next = uint16(i + 1)
			}
		}
		q.WriteTable(table, descs)
		ids, err := q.AllocDescs(1)
		if err != nil {
			return nil, err
		}
		q.SetDesc(ids[0], Desc{Addr: table, Len: uint32(16 * len(descs)), Flags: DescIndirect})
		q.chains[ids[0]] = ids
		sub.Head = ids[0]
		return sub, q.Publish(ids[0])
	}
	ids, err := q.AllocDescs(len(descs))
	if err != nil {
		return nil, err
	}
	for i, d := range descs {
		if i+1 < len(descs) {
			d.Flags |= DescNext
			d.Next = ids[i+1]
		}
		q.SetDesc(ids[i], d)
	}
	q.chains[ids[0]] = ids
	sub.Head = ids[0]
	return sub, q.Publish(ids[0])
}

// Complete waits for the next used entry, checks it returns sub's chain,
// frees the chain's descriptors and returns the bytes the device wrote
// (copied out of the writable buffers) and the used length.
func (q *Queue) Complete(sub *Submission) ([]byte, UsedElem, error) {
	e, err := q.Wait()
	if err != nil {
		return nil, e, err
	}
	q.Release(uint16(e.ID))
	if e.ID != uint32(sub.Head) {
		return nil, e, fmt.Errorf("queue %d: used entry for head %d, want %d", q.Index, e.ID, sub.Head)
	}
	total := 0
	for _, d := range sub.Writable {
		total += int(d.Len)
	}
	if int(e.Len) > total {
		return nil, e, fmt.Errorf("queue %d: device wrote %d bytes into %d of writable buffers", q.Index, e.Len, total)
	}
	out := make([]byte, 0, e.Len)
	left := int(e.Len)
	for _, d := range sub.Writable {
		if left == 0 {
			break
		}
		k := min(left, int(d.Len))
		out = append(out, q.Mem.Bytes(d.Addr, uint64(k))...)
		left -= k
	}
	return out, e, nil
}

// Release frees the descriptors of the chain Submit made with head (a no-op
// for heads it did not make).
func (q *Queue) Release(head uint16) {
	if ids, ok := q.chains[head]; ok {
		delete(q.chains, head)
		q.FreeDescs(ids)
	}
}

// Exchange submits one chain (readable req, one writable buffer of
// replySize bytes) and returns what the device wrote.
func (q *Queue) Exchange(req []byte, replySize int, opt ChainOptions) ([]byte, error) {
	var writable []int
	if replySize > 0 {
		writable = []int{replySize}
	}
	sub, err := q.Submit([][]byte{req}, writable, opt)
	if err != nil {
		return nil, err
	}
	out, _, err := q.Complete(sub)
	return out, err
}
