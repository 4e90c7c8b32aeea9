package vhostuser

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/guestmem"
	"github.com/ferryfs/ferryfs/virtqueue"
)

// vring is one queue's state as the front-end configures it, and the
// goroutine that processes it once started.
//
// Configuration fields are only touched by the connection's goroutine. The
// kick poller and the workers use q, the call and error descriptors,
// enabled and broken.
type vring struct {
	index int
	log   *slog.Logger

	num     uint32
	addr    vringAddr
	addrSet bool
	base    uint16
	kickFD  int // -1 when unset; in the poller's epoll set while the ring runs

	enabled atomic.Bool

	callMu sync.RWMutex
	callFD int // protected by callMu; -1 when unset
	errMu  sync.Mutex
	errFD  int // protected by errMu; -1 when unset

	// Set while the ring runs. The poller drains the ring under serving
	// only, so the connection's goroutine changes q under it too.
	q       *virtqueue.Queue
	poller  *kickPoller
	serving sync.Mutex
	// drainPending asks the poller to drain the ring without a kick.
	drainPending atomic.Bool
	// broken is set when the queue, its memory or its kick descriptor
	// failed; the ring serves nothing more until it is started again.
	broken   atomic.Bool
	stopping atomic.Bool
	inflight sync.WaitGroup
}

func newVring(index int, log *slog.Logger) *vring {
	return &vring{index: index, log: log, kickFD: -1, errFD: -1, callFD: -1}
}

func (v *vring) running() bool { return v.q != nil }

// eventOne is the 8-byte value written to an eventfd to signal it.
var eventOne = func() *[8]byte {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	return &b
}()

// signal interrupts the guest for this queue.
func (v *vring) signal() {
	v.callMu.RLock()
	if v.callFD >= 0 {
		// A raw write: writing an eventfd never blocks (the descriptor is
		// non-blocking; EAGAIN means the counter is saturated and the
		// guest is interrupted anyway), so the scheduler need not know.
		unix.RawSyscall(unix.SYS_WRITE, uintptr(v.callFD), uintptr(unsafe.Pointer(eventOne)), 8)
	}
	v.callMu.RUnlock()
}

// fail stops serving the ring for good (until it is started again): logs
// why, once, and tells the front-end through the error eventfd
// (SET_VRING_ERR), which QEMU reports.
func (v *vring) fail(err error) {
	if !v.broken.CompareAndSwap(false, true) {
		return
	}
	v.log.Error("queue broken; no longer processing it", "queue", v.index, "err", err)
	v.errMu.Lock()
	if v.errFD >= 0 {
		// Non-blocking (see setVringFD): a saturated counter has told
		// the front-end already.
		unix.RawSyscall(unix.SYS_WRITE, uintptr(v.errFD), uintptr(unsafe.Pointer(eventOne)), 8)
	}
	v.errMu.Unlock()
}

func (v *vring) setErr(fd int) {
	v.errMu.Lock()
	old := v.errFD
	v.errFD = fd
	v.errMu.Unlock()
	if old >= 0 {
		unix.Close(old)
	}
}

func (v *vring) setCall(fd int) {
	v.callMu.Lock()
	old := v.callFD
	v.callFD = fd
	v.callMu.Unlock()
	if old >= 0 {
		unix.Close(old)
	}
}

// setKickFD replaces the kick descriptor, closing the old one; the ring
// must be stopped (so the poller no longer watches the old one).
func (v *vring) setKickFD(fd int) {
	if v.kickFD >= 0 {
		unix.Close(v.kickFD)
	}
	v.kickFD = fd
}

// start begins processing with memory mem; the ring must be fully
// configured.
func (v *vring) start(b *Backend, mem *guestmem.Memory) error {
	if v.num == 0 || !v.addrSet || v.kickFD < 0 {
		return nil // not configured yet; a later message starts it
	}
	// A request served now could change what a save has not written
	// yet, or be undone by a load.
	b.cancelTransfer(fmt.Sprintf("queue %d started", v.index))
	toGuest := func(what string, uaddr, n uint64) (uint64, error) {
		g, err := mem.UserToGuest(uaddr, n)
		if err != nil {
			return 0, fmt.Errorf("queue %d %s ring at user address %#x: %w", v.index, what, uaddr, err)
		}
		return g, nil
	}
	n := uint64(v.num)
	desc, err := toGuest("descriptor", v.addr.desc, 16*n)
	if err != nil {
		return err
	}
	avail, err := toGuest("available", v.addr.avail, 6+2*n)
	if err != nil {
		return err
	}
	used, err := toGuest("used", v.addr.used, 6+8*n)
	if err != nil {
		return err
	}
	q, err := virtqueue.New(virtqueue.Config{
		Size: uint16(v.num), DescAddr: desc, AvailAddr: avail, UsedAddr: used,
		EventIdx: b.features&FeatureEventIdx != 0, Indirect: b.features&FeatureIndirectDesc != 0,
		LastAvail: v.base,
	}, mem)
	if err != nil {
		return fmt.Errorf("queue %d: %w", v.index, err)
	}
	v.serving.Lock()
	v.q, v.poller = q, b.poller
	v.broken.Store(false)
	v.stopping.Store(false)
	v.serving.Unlock()
	b.applyRingLogging(v)
	if err := b.poller.add(v); err != nil {
		// Running but broken, as if it had failed later: stop and a
		// new start repair it.
		v.fail(err)
		return nil
	}
	v.log.Debug("queue started", "queue", v.index, "size", v.num, "base", v.base)
	return nil
}

// stop ends processing, waits for the chains in flight to be returned and
// keeps the position for a restart or GET_VRING_BASE.
func (v *vring) stop() {
	if !v.running() {
		return
	}
	v.stopping.Store(true)
	v.poller.remove(v)
	v.base = v.quiesce()
	// Chains handed to workers are returned (or failed) before the
	// queue goes.
	v.inflight.Wait()
	v.serving.Lock()
	v.q = nil
	v.serving.Unlock()
	v.log.Debug("queue stopped", "queue", v.index, "base", v.base)
}

// quiesce waits until the poller has let go of a stopping ring, and
// returns the ring's position: the poller pops chains only under serving
// and no longer once stopping is set, so after quiesce has held serving
// nothing more is taken from the ring (and inflight no longer grows).
func (v *vring) quiesce() (lastAvail uint16) {
	v.serving.Lock()
	defer v.serving.Unlock()
	return v.q.LastAvail()
}

// closeFDs releases the descriptors the front-end gave for this ring.
func (v *vring) closeFDs() {
	v.setKickFD(-1)
	v.setErr(-1)
	v.setCall(-1)
}

// drainRing hands every available chain to the workers, then asks the
// driver for a kick for the next one.
func (v *vring) drainRing(b *Backend) error {
	for {
		for !v.stopping.Load() && !v.broken.Load() {
			j := b.getJob(v)
			ok, err := v.q.Pop(&j.chain)
			if err != nil || !ok {
				b.putJob(j)
				if err != nil {
					return err
				}
				break
			}
			if j.chain.Err != nil {
				b.warnChain(v.index, j.chain.Err)
				if v.q.Push(&j.chain, 0) {
					v.signal()
				}
				b.putJob(j)
				continue
			}
			if b.opts.Workers > 0 && v.q.HasAvailable() {
				v.inflight.Add(1)
				b.jobs <- j
				continue
			}
			// The last chain of a burst is served here: handing it to a
			// worker would cost a goroutine switch and an OS thread
			// wake-up for every request of a guest that waits for each
			// reply before sending the next (most file system calls),
			// which profiling showed to be most of the daemon's CPU
			// time. Chains that arrive meanwhile wait for at most this
			// one request; with workers, bursts still spread over them.
			// It is not counted in inflight: stop waits for the poller
			// to let go of the ring anyway, and a fault while serving
			// it (see kickPoller.drain) would leave the count up.
			b.serveChain(v, &j.chain)
			b.putJob(j)
		}
		if v.stopping.Load() || v.broken.Load() || !v.q.ArmNotify() {
			return nil
		}
	}
}
