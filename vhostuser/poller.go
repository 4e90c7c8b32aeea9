package vhostuser

import (
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kickPoller waits for the kicks of every running ring of a connection in
// one goroutine and drains the rings that were kicked.
//
// Why one goroutine, and why it waits in a raw system call while busy:
// profiling a guest that sends one request at a time (most file system
// calls) showed a third of the daemon's CPU time in the Go runtime rather
// than in serving. A goroutine blocked in an ordinary system call lets
// sysmon take its P after 20µs when no P is idle, or after 10ms of the same
// goroutine running; the next kick then exits the system call on the slow
// path, which wakes sysmon from its deep sleep, which polls every 20µs
// again: 30 k nanosleeps and 18 k futex calls for 32 k kicks. Waiting in
// the netpoller instead leaves every P idle between requests, with the same
// sysmon wake-ups. A raw epoll_wait keeps the P: the runtime sees a running
// goroutine, sysmon backs off to 10ms and only preempts it then (a signal
// taken when the wait ends, see waitMask, where we yield). One goroutine holds
// one P for all rings, and the back-end adds one to GOMAXPROCS for it, so it
// costs the workers no parallelism.
//
// Kick descriptors are watched edge-triggered and never read: every write
// to an eventfd wakes its waiters, so each kick is an edge, and the counter
// it leaves behind needs no reset. That is one system call less per kick
// than reading it (virtiofsd reads it), and a kick descriptor that is not an
// eventfd (a pipe, /dev/zero: always readable) gives one edge, not a busy
// loop.
//
// After rawIdle without an event the poller goes back to an ordinary wait,
// so an idle daemon lets the runtime sleep (no 10ms preemptions) the way
// virtiofsd sleeps.
type kickPoller struct {
	b      *Backend
	log    *slog.Logger
	wakeFD int // eventfd: the ring set changed, or the poller must end

	mu      sync.Mutex
	rings   []polled // the running rings, protected by mu
	changed atomic.Bool
	closing atomic.Bool
	done    chan struct{}
}

// polled is a ring and the kick descriptor it had when it was added; the
// poller does not read vring.kickFD outside vring.serving.
type polled struct {
	v    *vring
	kick int32
}

// waitMask is the signal mask during a raw wait: the kernel's sigset_t
// (64 bits on every architecture Go runs Linux on) with SIGURG blocked.
// SIGURG is the runtime's preemption signal, which sysmon sends to a
// goroutine running for 10ms: delivered during the wait it wakes the
// thread only to make it wait again. Blocked, it stays pending and is taken
// when the wait ends (the next kick, or rawIdle at most), where the
// goroutine yields anyway. Guest runs made a third fewer context switches
// with the sequential workload (5.1-6.2 k against 7.7-9.7 k). Other signals
// still interrupt the wait. A stop-the-world waits for the wait to end
// (rawIdle at most), which is rare: the serving path hardly allocates.
var waitMask = uint64(1) << (unix.SIGURG - 1)

// rawIdle is how long the poller waits in a raw epoll_wait for the next kick
// before it hands its P back to the runtime (it must be whole milliseconds).
const rawIdle = 20 * time.Millisecond

// gomaxprocsMu serializes the GOMAXPROCS adjustments of concurrent
// back-ends (tests run several in one process).
var gomaxprocsMu sync.Mutex

func adjustGOMAXPROCS(delta int) {
	gomaxprocsMu.Lock()
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + delta)
	gomaxprocsMu.Unlock()
}

func startPoller(b *Backend) (*kickPoller, error) {
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	p := &kickPoller{b: b, log: b.log, wakeFD: wake, done: make(chan struct{})}
	adjustGOMAXPROCS(1)
	go p.run()
	return p, nil
}

// close ends the poller; every ring must have been removed.
func (p *kickPoller) close() {
	p.closing.Store(true)
	p.wake()
	<-p.done
	unix.Close(p.wakeFD)
	adjustGOMAXPROCS(-1)
}

func (p *kickPoller) wake() {
	unix.RawSyscall(unix.SYS_WRITE, uintptr(p.wakeFD), uintptr(unsafe.Pointer(eventOne)), 8)
}

// add starts polling v's kick descriptor and drains v once.
func (p *kickPoller) add(v *vring) {
	p.mu.Lock()
	p.rings = append(p.rings, polled{v, int32(v.kickFD)})
	p.mu.Unlock()
	p.changed.Store(true)
	p.wake()
}

// remove stops polling v. v.stopping must be set; when remove returns the
// poller no longer touches v's queue or kick descriptor.
func (p *kickPoller) remove(v *vring) {
	p.forget(v)
	p.wake()
	// The poller checks stopping under serving before it drains v or
	// reads its kick descriptor.
	v.serving.Lock()
	v.serving.Unlock()
}

// forget drops v from the set the poller rebuilds its descriptors from.
func (p *kickPoller) forget(v *vring) {
	p.mu.Lock()
	p.rings = slices.DeleteFunc(p.rings, func(r polled) bool { return r.v == v })
	p.mu.Unlock()
	p.changed.Store(true)
}

// poke makes the poller look at every ring again (a ring was enabled).
func (p *kickPoller) poke() {
	p.changed.Store(true)
	p.wake()
}

func (p *kickPoller) run() {
	defer close(p.done)
	var (
		rings  []polled // the set ep watches: event tag i+1 is rings[i], 0 the wake eventfd
		ep     = -1
		events [8]unix.EpollEvent
		buf    [8]byte // the wake eventfd's counter
	)
	defer func() {
		if ep >= 0 {
			unix.Close(ep)
		}
	}()
	p.changed.Store(true) // build the first set
	raw := true
	for !p.closing.Load() {
		if p.changed.Swap(false) {
			p.mu.Lock()
			rings = append(rings[:0], p.rings...)
			p.mu.Unlock()
			if ep >= 0 {
				unix.Close(ep)
			}
			var err error
			if ep, err = p.watch(rings); err != nil {
				p.log.Error("waiting for kicks; no longer processing any queue", "err", err)
				return
			}
			// A ring may hold chains from before it was (re)started
			// or enabled, for which no kick will come.
			for _, r := range rings {
				p.drain(r.v)
			}
			continue // the set may have changed again meanwhile
		}
		var (
			n   uintptr
			err error
		)
		if raw {
			// A wait that times out ends the raw mode, so no clock
			// is read per request (reading it twice per kick was
			// about 1 % of a getattr's profile).
			var errno unix.Errno
			n, _, errno = unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(rawIdle/time.Millisecond),
				uintptr(unsafe.Pointer(&waitMask)), unsafe.Sizeof(waitMask))
			if errno != 0 {
				err = errno
			} else if n == 0 {
				raw = false
				continue
			}
		} else {
			var k int
			k, err = unix.EpollWait(ep, events[:], -1)
			n = uintptr(max(k, 0))
		}
		if err == unix.EINTR {
			// A signal: in the ordinary wait, most likely the
			// runtime preempting us (the raw wait blocks that one).
			runtime.Gosched()
			continue
		}
		if err != nil {
			p.log.Error("waiting for kicks; no longer processing any queue", "err", err)
			return
		}
		for _, ev := range events[:n] {
			tag := int(ev.Fd)
			if tag == 0 {
				unix.Read(p.wakeFD, buf[:])
				continue
			}
			if tag > len(rings) {
				continue // from a set before the last change
			}
			r := rings[tag-1]
			raw = true
			if broken := p.drain(r.v); broken {
				p.forget(r.v)
			}
		}
	}
}

// watch returns a new epoll instance watching the wake eventfd and the kick
// descriptors of rings. A kick descriptor epoll refuses (a regular file,
// which a broken front-end may send) breaks its ring only.
func (p *kickPoller) watch(rings []polled) (int, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, p.wakeFD, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: 0}); err != nil {
		unix.Close(ep)
		return -1, fmt.Errorf("epoll_ctl wake eventfd: %w", err)
	}
	for i, r := range rings {
		err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, int(r.kick), &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(i + 1)})
		if err != nil {
			r.v.log.Error("kick descriptor cannot be waited for; no longer processing the queue", "queue", r.v.index, "err", err)
			r.v.serving.Lock()
			r.v.broken = true
			r.v.serving.Unlock()
			p.forget(r.v)
		}
	}
	return ep, nil
}

// drain serves v's available chains. It reports whether v is broken.
func (p *kickPoller) drain(v *vring) (broken bool) {
	v.serving.Lock()
	defer v.serving.Unlock()
	if v.stopping.Load() || v.broken {
		return v.broken
	}
	if !v.enabled.Load() {
		return false
	}
	if err := v.drainRing(p.b); err != nil {
		v.log.Error("queue broken; no longer processing it", "queue", v.index, "err", err)
		v.broken = true
	}
	return v.broken
}
