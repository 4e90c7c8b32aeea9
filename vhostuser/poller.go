package vhostuser

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/guestmem"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// kickPoller waits for the kicks of every running ring of a connection in
// one goroutine and drains the rings that were kicked.
//
// Why one goroutine, and why it waits the way it does: a guest that sends
// one request at a time (most file system calls) leaves the daemon idle
// between requests, and what the Go runtime does around those idle waits
// can cost more than serving (a third of the daemon's CPU time once, on
// hosts where a context switch costs tens of microseconds). The cost is the
// runtime's monitor thread, sysmon. While any P is busy, it wakes at least
// every 10ms and preempts a goroutine that has not been rescheduled for
// 10ms (a signal, then a hand-over between threads); if it finds that
// goroutine inside a system call, it takes its P. After taking a P, or after
// an ordinary system call woke it from its deep sleep, it polls every 20µs
// for a millisecond (about 60 wake-ups). It sleeps deeply, and long, only
// once it finds every P idle.
//
// So the poller
//   - serves with raw system calls (internal/rawsys): no system call on the
//     request path wakes sysmon or is a P for it to take;
//   - waits for the next kick in a raw epoll_wait that keeps its P (see
//     waitMask): one system call per request, the cheapest wait there is;
//   - after rawIdle without a kick, and once every parkEvery while kicks keep
//     coming, waits in the runtime's netpoller instead (see netpollWaiter).
//     That reschedules the poller, so it never looks like running too long,
//     and leaves its P idle until the kick, so sysmon, when it looks, finds
//     every P idle and goes back to its deep sleep, from which nothing on the
//     request path wakes it.
//
// Measured with the guest metadata workload, strace of sysmon over 20 s:
// ordinary system calls and a raw wait: 3,376 sysmon wake-ups, 706
// preemptions; raw system calls: 1,272 and 551; and the netpoller after
// rawIdle: 736 and 285; and every parkEvery: 188 and 3. The daemon's
// voluntary context switches went from 44-52 k a run to 33 k, virtiofsd's
// count (it makes one per request).
//
// One goroutine holds one P for all rings, and the back-end adds one to
// GOMAXPROCS for it (rawsys.AddProcs), so it costs the workers no
// parallelism.
//
// Kick descriptors are watched edge-triggered and never read: every write
// to an eventfd wakes its waiters, so each kick is an edge, and the counter
// it leaves behind needs no reset. That is one system call less per kick
// than reading it (virtiofsd reads it), and a kick descriptor that is not an
// eventfd (a pipe, /dev/zero: always readable) gives one edge, not a busy
// loop.
//
// Ownership of the kick descriptors: the connection's goroutine adds a
// ring's descriptor to the epoll set when the ring starts and deletes it
// when the ring stops, before the ring may close it (epoll_ctl is safe
// beside a running epoll_wait). The poller never names a descriptor
// itself: an event carries the ring's index, and drain checks under
// vring.serving that the ring still runs. So a descriptor the ring closed,
// and whose number the process reused meanwhile, is never watched by
// mistake.
type kickPoller struct {
	b       *Backend
	log     *slog.Logger
	wakeFD  int // eventfd: a ring wants draining, or the poller must end
	ep      int // epoll instance: the wake eventfd (tag 0) and each running ring's kick descriptor (tag index+1)
	netpoll *netpollWaiter

	closing atomic.Bool
	done    chan struct{}
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

// parkEvery is how long the poller serves in its raw mode before it waits
// in the netpoller once (see netpollWaiter), even while kicks keep coming. The
// runtime counts a goroutine that has not been rescheduled for 10ms as
// running too long: sysmon, when awake, preempts it then (a signal and a
// hand-over between threads), and sysmon stays awake for as long as a P is
// never idle when it looks. A wait in the netpoller reschedules the
// poller, and lets the P be idle for the rest of the gap to the next kick.
const parkEvery = 5 * time.Millisecond

func startPoller(b *Backend) (*kickPoller, error) {
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: 0}); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl wake eventfd: %w", err)
	}
	netpoll, err := newNetpollWaiter()
	if err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, err
	}
	p := &kickPoller{b: b, log: b.log, wakeFD: wake, ep: ep, netpoll: netpoll, done: make(chan struct{})}
	rawsys.AddProcs(1)
	go p.run()
	return p, nil
}

// close ends the poller; every ring must have been removed.
func (p *kickPoller) close() {
	p.closing.Store(true)
	p.wake()
	<-p.done
	p.netpoll.close()
	unix.Close(p.ep)
	unix.Close(p.wakeFD)
	rawsys.AddProcs(-1)
}

func (p *kickPoller) wake() {
	unix.RawSyscall(unix.SYS_WRITE, uintptr(p.wakeFD), uintptr(unsafe.Pointer(eventOne)), 8)
}

// add starts watching v's kick descriptor and has the poller drain v once:
// it may hold chains from before it was (re)started, for which no kick will
// come. Only the connection's goroutine calls it, for a started ring.
func (p *kickPoller) add(v *vring) error {
	err := unix.EpollCtl(p.ep, unix.EPOLL_CTL_ADD, v.kickFD, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(v.index + 1)})
	if err != nil {
		return fmt.Errorf("kick descriptor cannot be waited for: %w", err)
	}
	p.poke(v)
	return nil
}

// remove stops watching v's kick descriptor, which v may close once remove
// returns. The poller may still be draining v, or about to drain it for an
// event it took before; v.stopping, set before remove, makes such a drain
// do nothing, and vring.quiesce waits for one in progress.
func (p *kickPoller) remove(v *vring) {
	err := unix.EpollCtl(p.ep, unix.EPOLL_CTL_DEL, v.kickFD, nil)
	if err != nil && err != unix.ENOENT && err != unix.EPERM { // not added: add failed (see vring.start)
		// The descriptor is open (only the ring closes it, after this),
		// so this does not happen; were it to, the ring's index in the
		// event keeps the poller from draining the wrong ring.
		p.log.Error("kick descriptor cannot be removed from the poller", "queue", v.index, "err", err)
	}
}

// poke has the poller drain v once (v was started or enabled).
func (p *kickPoller) poke(v *vring) {
	v.drainPending.Store(true)
	p.wake()
}

func (p *kickPoller) run() {
	defer close(p.done)
	debug.SetPanicOnFault(true) // see drain
	var (
		events [8]unix.EpollEvent
		buf    [8]byte // the wake eventfd's counter
	)
	rings := p.b.vrings
	raw := true
	parked := time.Now() // when the poller last went through the netpoller
	for !p.closing.Load() {
		var (
			n   int
			err error
		)
		if raw && time.Since(parked) < parkEvery {
			// A wait that times out ends the raw mode.
			r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(rawIdle/time.Millisecond),
				uintptr(unsafe.Pointer(&waitMask)), unsafe.Sizeof(waitMask))
			switch {
			case errno == unix.EINTR:
				continue
			case errno != 0:
				err = errno
			case r == 0:
				raw = false
				continue
			}
			n = int(r)
		} else {
			n, err = p.netpoll.wait(p.ep, events[:])
			parked = time.Now()
		}
		if err != nil {
			p.log.Error("waiting for kicks; no longer processing any queue", "err", err)
			return
		}
		for _, ev := range events[:n] {
			tag := int(ev.Fd)
			if tag == 0 {
				unix.RawSyscall(unix.SYS_READ, uintptr(p.wakeFD), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
				// Rarely (a ring started or enabled): look at each.
				for _, v := range rings {
					if v.drainPending.Load() && v.drainPending.Swap(false) {
						p.drain(v)
					}
				}
				continue
			}
			if tag > len(rings) {
				continue // not a tag add gives
			}
			raw = true
			p.drain(rings[tag-1])
		}
	}
}

// drain serves v's available chains.
//
// The poller touches guest memory and the dirty log here only, and runs
// with SetPanicOnFault: a fault (the front-end shrank a file under its
// mapping) breaks the ring instead of killing the daemon.
func (p *kickPoller) drain(v *vring) {
	v.serving.Lock()
	defer func() {
		if r := recover(); r != nil {
			err := guestmem.AsFault(r)
			if err == nil {
				panic(r)
			}
			v.fail(err)
		}
		v.serving.Unlock()
	}()
	// A ring that stopped since the event was taken, or never started
	// (a stale pending drain), has no queue to drain.
	if v.stopping.Load() || v.q == nil || v.broken.Load() || !v.enabled.Load() {
		return
	}
	if err := v.drainRing(p.b); err != nil {
		v.fail(err)
	}
}

// netpollWaiter waits for an epoll instance's events in the runtime's
// netpoller, for the poller's waits that give up its P (see kickPoller).
// Unlike an ordinary blocking epoll_wait, which sysmon takes the P of after
// 10ms and which wakes sysmon when it returns, it leaves no thread in a
// system call the runtime knows of.
//
// The netpoller watches an epoll instance of the waiter's own (outer), which
// holds the poller's instance only during a wait: were the poller's instance
// registered for good, every kick in raw mode would also wake the thread
// that waits in the netpoller for the other goroutines.
type netpollWaiter struct {
	outer   *os.File // registered with the netpoller
	outerFD int      // outer's descriptor
	conn    syscall.RawConn
	// The wait in progress, for poll (bound once: no allocation per wait).
	ep     int
	events []unix.EpollEvent
	n      int
	errno  unix.Errno
	poll   func(uintptr) bool
}

func newNetpollWaiter() (*netpollWaiter, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("epoll instance: %w", err)
	}
	f := os.NewFile(uintptr(fd), "kicks")
	conn, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("epoll instance: %w", err)
	}
	w := &netpollWaiter{outer: f, outerFD: fd, conn: conn}
	w.poll = w.pollOnce
	return w, nil
}

func (w *netpollWaiter) close() { w.outer.Close() }

// wait returns ep's next events in events, parking until there are some.
func (w *netpollWaiter) wait(ep int, events []unix.EpollEvent) (int, error) {
	w.ep, w.events, w.n, w.errno = ep, events, 0, 0
	// Adding a ready instance makes outer ready at once: no kick between
	// the last raw wait and this one is missed.
	if err := rawsys.EpollCtl(w.outerFD, unix.EPOLL_CTL_ADD, ep, unix.EPOLLIN); err != nil {
		return 0, fmt.Errorf("netpoller wait: epoll_ctl: %w", err)
	}
	err := w.conn.Read(w.poll)
	if derr := rawsys.EpollCtl(w.outerFD, unix.EPOLL_CTL_DEL, ep, 0); derr != nil && err == nil {
		err = derr
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("netpoller wait: %w", err)
	case w.errno != 0:
		return 0, fmt.Errorf("netpoller wait: epoll_wait: %w", w.errno)
	}
	return w.n, nil
}

// pollOnce collects ep's pending events without blocking and reports
// whether there were any (or an error).
func (w *netpollWaiter) pollOnce(uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(w.ep), uintptr(unsafe.Pointer(&w.events[0])), uintptr(len(w.events)), 0, 0, 0)
		switch e {
		case 0:
			w.n = int(n)
			return n > 0
		case unix.EINTR:
			continue // the edge that woke us is spent: ask again now
		default:
			w.errno = e
			return true
		}
	}
}
