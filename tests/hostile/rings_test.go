package hostile

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	vf "github.com/ferryfs/ferryfs/tests/vhostfront"
)

// TestBrokenRing breaks the request queue's available ring in ways that
// cannot be followed: the queue stops (the log says so, and the back-end
// signals the queue's error eventfd, SET_VRING_ERR, which QEMU reports),
// the daemon stays alive, the high-priority queue and a second request
// queue keep serving, the broken queue can be stopped and restarted by the
// front-end, and the connection closes cleanly.
func TestBrokenRing(t *testing.T) {
	cases := []struct {
		name      string
		breakRing func(q *vf.Queue)
	}{
		{"avail idx jumps by more than the queue size", func(q *vf.Queue) {
			q.StoreAvailIdx(q.AvailIdx() + queueSize + 1)
		}},
		{"avail idx jumps by 0x8000", func(q *vf.Queue) {
			q.StoreAvailIdx(q.AvailIdx() + 0x8000)
		}},
		{"avail idx moves backwards", func(q *vf.Queue) {
			q.StoreAvailIdx(q.AvailIdx() - 1)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := start(t, config{})
			q2, err := e.f.StartQueue(2, 64)
			if err != nil {
				t.Fatal(err)
			}
			e.serves(e.rq)
			good := e.rq.AvailIdx()
			c.breakRing(e.rq)
			if err := e.rq.Kick(); err != nil {
				t.Fatal(err)
			}
			e.waitLog(`queue broken; no longer processing it.*queue=1`)
			if n, err := e.rq.WaitError(timeout); err != nil || n != 1 {
				t.Errorf("error eventfd of the broken queue: %d, %v; want 1", n, err)
			}
			e.alive()
			e.serves(e.hi)
			e.serves(q2)

			// The broken queue neither serves nor crashes on more kicks,
			// nor logs its breakage again.
			e.rq.Kick()
			e.serves(q2)
			if n := strings.Count(e.d.Output(), "queue broken; no longer processing it"); n != 1 {
				t.Errorf("the broken queue was logged %d times, want once", n)
			}

			// The front-end stops it (GET_VRING_BASE), repairs the
			// ring and starts it again where it left off.
			base, err := e.f.GetVringBase(1)
			if err != nil {
				t.Fatalf("GET_VRING_BASE of the broken queue: %v", err)
			}
			t.Logf("GET_VRING_BASE of the broken queue: %d (last good avail idx %d)", base, good)
			e.rq.SetAvailEntry(uint16(base), 0)
			e.rq.StoreAvailIdx(uint16(base))
			if err := e.f.Set(vf.SetVringBase, vf.VringState(1, base), nil); err != nil {
				t.Fatal(err)
			}
			if err := e.f.Set(vf.SetVringKick, vf.U64(1), []int{e.rq.KickFD}); err != nil {
				t.Fatal(err)
			}
			// Entries the device wrote meanwhile (none) were consumed;
			// serving resumes.
			for e.rq.Pending() {
				e.rq.WaitTimeout(time.Second)
			}
			e.serves(e.rq)
			e.finish()
		})
	}
}

// TestInvalidHeadSkipped makes entries of the available ring name
// descriptors that do not exist, between good chains: nothing can be
// returned for them, so they are skipped (a warning is logged) and never
// appear in the used ring, and the chains around them are served, as
// virtiofsd does. The queue is not stopped and its error eventfd stays
// quiet.
func TestInvalidHeadSkipped(t *testing.T) {
	for _, bad := range []uint16{queueSize, 0xffff} {
		e := start(t, config{})
		e.serves(e.rq)
		req := func() *vf.Submission {
			sub, err := e.rq.Submit([][]byte{e.getattrReq()}, []int{4096}, vf.ChainOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return sub
		}
		// A good chain, two bad entries, a good chain, in one kick.
		first := req()
		idx := e.rq.AvailIdx()
		e.rq.SetAvailEntry(idx, bad)
		e.rq.SetAvailEntry(idx+1, bad)
		e.rq.StoreAvailIdx(idx + 2)
		second := req()
		for _, sub := range []*vf.Submission{first, second} {
			out, used, err := e.rq.Complete(sub)
			if err != nil {
				t.Fatalf("head %d: the chain around invalid entries: %v (used entry %+v)", bad, err, used)
			}
			if rep, err := vf.ParseReply(out); err != nil || rep.Header.Status != 0 {
				t.Fatalf("head %d: reply %+v, %v", bad, rep, err)
			}
		}
		if e.rq.Pending() {
			t.Fatalf("head %d: more used entries than good chains", bad)
		}
		e.waitLog(`available head out of range`)
		if n, _ := e.rq.WaitError(0); n != 0 {
			t.Errorf("head %d: error eventfd signalled %d for skipped entries", bad, n)
		}
		e.serves(e.rq)
		e.finish()
	}
}

// TestKickWithoutWork kicks queues with nothing available, many times, and
// kicks a queue that was never started: nothing happens.
func TestKickWithoutWork(t *testing.T) {
	e := start(t, config{})
	for i := 0; i < 1000; i++ {
		e.rq.Kick()
		e.hi.Kick()
	}
	e.serves(e.rq)
	e.finish()
}

// TestGuestScribbles has the guest rewrite descriptors and request bytes
// at random while the device is working on them (the guest owns that
// memory and may change it at any time): chains fail or succeed, the queue
// may even stop, but the daemon does not crash and its other queues keep
// serving.
func TestGuestScribbles(t *testing.T) {
	e := start(t, config{})
	const size = 64
	q, err := e.f.StartQueue(2, size)
	if err != nil {
		t.Fatal(err)
	}
	mem := e.f.Mem
	reqs := make([]uint64, size/2)
	replies := make([]uint64, size/2)
	restore := func(k int) {
		q.SetDesc(uint16(2*k), vf.Desc{Addr: reqs[k], Len: 56, Flags: vf.DescNext, Next: uint16(2*k + 1)})
		q.SetDesc(uint16(2*k+1), vf.Desc{Addr: replies[k], Len: 256, Flags: vf.DescWrite})
	}
	for k := range reqs {
		if reqs[k], err = mem.Put(e.getattrReq()); err != nil {
			t.Fatal(err)
		}
		if replies[k], err = mem.Buffer(256); err != nil {
			t.Fatal(err)
		}
		restore(k)
	}

	stop := make(chan struct{})
	scribbled := make(chan int)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		n := 0
		defer func() { scribbled <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			switch rng.IntN(4) {
			case 0: // one byte of the descriptor table
				mem.Bytes(q.DescAddr+uint64(rng.IntN(16*size)), 1)[0] = byte(rng.Uint32())
			case 1: // a whole descriptor
				q.SetDesc(uint16(rng.IntN(size)), vf.Desc{
					// Anywhere in the upper half of guest memory (the
					// buffers; the rings are in the lower half) or
					// just past its end.
					Addr: mem.GuestBase + mem.Size/2 + rng.Uint64N(mem.Size/2+4096) - 2048, Len: rng.Uint32N(1 << 20),
					Flags: uint16(rng.IntN(8)), Next: uint16(rng.IntN(size + 2)),
				})
			case 2: // a byte of a request
				mem.Bytes(reqs[rng.IntN(len(reqs))]+uint64(rng.IntN(56)), 1)[0] = byte(rng.Uint32())
			case 3: // put a chain back in order
				restore(rng.IntN(len(reqs)))
			}
			n++
			if n%64 == 0 {
				time.Sleep(time.Millisecond) // let the device get some work done
			}
		}
	}()

	deadline := time.Now().Add(2 * time.Second)
	published := 0
	for k := 0; time.Now().Before(deadline); k = (k + 1) % len(reqs) {
		// Keep no more than the queue's worth in flight; a queue the
		// scribbling broke stops taking chains, which ends the loop.
		for uint16(q.AvailIdx()-q.UsedIdx()) >= size/2 {
			if time.Now().After(deadline) {
				break
			}
			q.WaitTimeout(100 * time.Millisecond)
		}
		q.SetAvailEntry(q.AvailIdx(), uint16(2*k))
		q.StoreAvailIdx(q.AvailIdx() + 1)
		q.Kick()
		published++
	}
	close(stop)
	t.Logf("%d chains published, %d used, %d scribbles", published, q.UsedIdx(), <-scribbled)
	// Stop the queue: once GET_VRING_BASE is answered the device writes
	// nothing more for it, so it cannot scribble over the buffers of the
	// requests below.
	if _, err := e.f.GetVringBase(2); err != nil {
		t.Fatal(err)
	}
	e.alive()
	e.serves(e.rq)
	e.serves(e.hi)
	e.finish()
}
