package vhostuser

import (
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
// than in serving. A goroutine blocked in an ordinary system call (ppoll)
// lets sysmon take its P after 20µs when no P is idle, or after 10ms of the
// same goroutine running; the next kick then exits the system call on the
// slow path, which wakes sysmon from its deep sleep, which polls every 20µs
// again: 30 k nanosleeps and 18 k futex calls for 32 k kicks. Waiting in
// the netpoller instead leaves every P idle between requests, with the same
// sysmon wake-ups. A raw ppoll keeps the P: the runtime sees a running
// goroutine, sysmon backs off to 10ms and only preempts it then (a signal
// that interrupts the ppoll with EINTR, where we yield). One goroutine
// holds one P for all rings, and the back-end adds one to GOMAXPROCS for
// it, so it costs the workers no parallelism.
//
// After rawIdle without a kick the poller goes back to an ordinary ppoll,
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

// rawIdle is how long the poller waits in a raw ppoll for the next kick
// before it hands its P back to the runtime.
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
	fds := []unix.PollFd{{Fd: int32(p.wakeFD), Events: unix.POLLIN}}
	var rings []polled // rings[i] owns fds[i+1]
	var drain [8]byte
	raw := true
	lastKick := time.Now()
	for !p.closing.Load() {
		if p.changed.Swap(false) {
			p.mu.Lock()
			rings = append(rings[:0], p.rings...)
			p.mu.Unlock()
			fds = fds[:1]
			for _, r := range rings {
				fds = append(fds, unix.PollFd{Fd: r.kick, Events: unix.POLLIN})
			}
			// A ring may hold chains from before it was (re)started
			// or enabled, for which no kick will come.
			for _, r := range rings {
				p.drain(r.v, false)
			}
			continue // the set may have changed again meanwhile
		}
		for k := range fds {
			fds[k].Revents = 0
		}
		var err error
		if raw {
			left := rawIdle - time.Since(lastKick)
			if left <= 0 {
				raw = false
				continue
			}
			ts := unix.NsecToTimespec(int64(left))
			_, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
			if errno != 0 {
				err = errno
			}
		} else {
			_, err = unix.Ppoll(fds, nil, nil)
		}
		if err == unix.EINTR {
			// Most likely the runtime preempting us: let it.
			runtime.Gosched()
			continue
		}
		if err != nil {
			p.log.Error("waiting for kicks; no longer processing any queue", "err", err)
			return
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			unix.Read(p.wakeFD, drain[:])
		}
		for i, r := range rings {
			if fds[i+1].Revents == 0 {
				continue
			}
			raw, lastKick = true, time.Now()
			if broken := p.drain(r.v, true); broken {
				p.forget(r.v)
			}
		}
	}
}

// drain serves v's available chains; kicked says v's kick descriptor
// fired and must be read first. It reports whether v is broken.
func (p *kickPoller) drain(v *vring, kicked bool) (broken bool) {
	v.serving.Lock()
	defer v.serving.Unlock()
	if v.stopping.Load() || v.broken {
		return v.broken
	}
	if kicked {
		var buf [8]byte
		n, err := unix.Read(v.kickFD, buf[:])
		if n != len(buf) && err != unix.EAGAIN {
			// An eventfd reads 8 bytes and resets; anything else (a
			// pipe at its end, /dev/zero) would wake us forever.
			v.log.Error("kick descriptor failed or is not an eventfd; no longer processing the queue", "queue", v.index, "read", n, "err", err)
			v.broken = true
			return true
		}
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
