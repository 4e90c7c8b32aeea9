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
// processing goroutine and the workers use q, call and enabled.
type vring struct {
	index int
	log   *slog.Logger

	num     uint32
	addr    vringAddr
	addrSet bool
	base    uint16
	kickFD  int // -1 when unset
	errFD   int

	enabled atomic.Bool

	callMu sync.RWMutex
	callFD int // protected by callMu; -1 when unset

	// Set while the ring runs.
	q        *virtqueue.Queue
	wakeFD   int // eventfd that interrupts the processing goroutine
	stopping atomic.Bool
	done     chan struct{}
	inflight sync.WaitGroup
}

func newVring(index int, log *slog.Logger) *vring {
	return &vring{index: index, log: log, kickFD: -1, errFD: -1, callFD: -1, wakeFD: -1}
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

func (v *vring) setCall(fd int) {
	v.callMu.Lock()
	old := v.callFD
	v.callFD = fd
	v.callMu.Unlock()
	if old >= 0 {
		unix.Close(old)
	}
}

func (v *vring) wake() {
	if v.wakeFD >= 0 {
		var one [8]byte
		binary.LittleEndian.PutUint64(one[:], 1)
		unix.Write(v.wakeFD, one[:])
	}
}

// start begins processing with memory mem; the ring must be fully
// configured.
func (v *vring) start(b *Backend, mem *guestmem.Memory) error {
	if v.num == 0 || !v.addrSet || v.kickFD < 0 {
		return nil // not configured yet; a later message starts it
	}
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
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("queue %d: eventfd: %w", v.index, err)
	}
	v.q, v.wakeFD = q, wake
	v.stopping.Store(false)
	v.done = make(chan struct{})
	b.applyRingLogging(v)
	go v.run(b)
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
	v.wake()
	<-v.done
	v.inflight.Wait()
	v.base = v.q.LastAvail()
	v.q = nil
	unix.Close(v.wakeFD)
	v.wakeFD = -1
	v.log.Debug("queue stopped", "queue", v.index, "base", v.base)
}

// closeFDs releases the descriptors the front-end gave for this ring.
func (v *vring) closeFDs() {
	for _, fd := range []*int{&v.kickFD, &v.errFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	v.setCall(-1)
}

// run takes chains off the ring until stopped, handing them to the
// workers.
//
// It waits for kicks in a blocking ppoll rather than in Go's netpoller, on
// purpose: measured under a guest that sends one request at a time, a ring
// goroutine parked in the netpoller left every P idle between requests, so
// the runtime's sysmon thread went to sleep and was woken again by the next
// request's first system call, then polled every 20µs: about a quarter of
// the daemon's CPU time. A P held in a system call is not idle, and with
// the connection's messages read through the netpoller (see conn) a P
// stays free, so sysmon neither sleeps nor takes the P away.
func (v *vring) run(b *Backend) {
	defer close(v.done)
	fds := []unix.PollFd{{Fd: int32(v.kickFD), Events: unix.POLLIN}, {Fd: int32(v.wakeFD), Events: unix.POLLIN}}
	var drain [8]byte
	for !v.stopping.Load() {
		if v.enabled.Load() {
			if err := v.drainRing(b); err != nil {
				v.log.Error("queue broken; no longer processing it", "queue", v.index, "err", err)
				return
			}
		}
		for k := range fds {
			fds[k].Revents = 0
		}
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			v.log.Error("waiting for a kick", "queue", v.index, "err", err)
			return
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLNVAL|unix.POLLHUP) != 0 {
			v.log.Error("kick descriptor failed; no longer processing the queue", "queue", v.index, "revents", fds[0].Revents)
			return
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			// An eventfd reads 8 bytes and resets; anything else (a pipe
			// at its end, /dev/zero) would wake us forever.
			n, err := unix.Read(v.kickFD, drain[:])
			if n != len(drain) && err != unix.EAGAIN {
				v.log.Error("kick descriptor is not an eventfd; no longer processing the queue", "queue", v.index, "read", n, "err", err)
				return
			}
		}
		if fds[1].Revents&unix.POLLIN != 0 {
			// Reading the wake-up eventfd only when it fired saves a
			// failing read (EAGAIN) per kick: one system call in four
			// of an idle-then-busy ring.
			unix.Read(v.wakeFD, drain[:])
		}
	}
}

// drainRing hands every available chain to the workers, then asks the
// driver for a kick for the next one.
func (v *vring) drainRing(b *Backend) error {
	for {
		for !v.stopping.Load() {
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
			v.inflight.Add(1)
			if v.q.HasAvailable() {
				b.jobs <- j
				continue
			}
			// The last chain of a burst is served here: handing it to a
			// worker would cost a goroutine switch and an OS thread
			// wake-up for every request of a guest that waits for each
			// reply before sending the next (most file system calls),
			// which profiling showed to be most of the daemon's CPU
			// time. Chains that arrive meanwhile wait for at most this
			// one request; bursts still spread over the workers.
			b.serve(j)
		}
		if v.stopping.Load() || !v.q.ArmNotify() {
			return nil
		}
	}
}
