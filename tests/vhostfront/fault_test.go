package vhostfront

import (
	"encoding/binary"
	"regexp"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// logOpts negotiates dirty logging.
var logOpts = Options{
	Protocol: ProtocolReplyAck | ProtocolMQ | ProtocolConfig | ProtocolResetDevice | ProtocolLogShmfd,
	Features: FeatureVersion1 | FeatureIndirectDesc | FeatureEventIdx | FeatureProtocolFeatures | FeatureLogAll,
}

// setLogBase sends SET_LOG_BASE declaring size bytes of logFD and returns
// the error of its reply (nil when the back-end answered).
func setLogBase(f *Frontend, logFD int, size uint64) error {
	payload := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, size), 0)
	_, err := f.Conn.Call(SetLogBase, payload, []int{logFD})
	return err
}

func memfdOf(t *testing.T, size int64) int {
	t.Helper()
	fd, err := unix.MemfdCreate("log", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	return fd
}

// waitLog waits for the daemon to log something matching re.
func waitLog(t *testing.T, d *Daemon, re string) {
	t.Helper()
	if err := d.WaitOutput(regexp.MustCompile(re), timeout); err != nil {
		t.Fatalf("%v\noutput:\n%s", err, d.Output())
	}
}

// TestLogBasePastEndOfFile: a dirty log declared larger than the file
// that backs it is refused; were it mapped, marking a page in its part past
// the end of the file would kill the daemon with SIGBUS.
func TestLogBasePastEndOfFile(t *testing.T) {
	d, f, _ := startAndConnect(t, logOpts)
	q, err := f.StartQueue(1, 64)
	if err != nil {
		t.Fatal(err)
	}
	c := NewFUSE(q)
	if _, err := c.Init(); err != nil {
		t.Fatal(err)
	}
	// One page of log file, declared as 1 MiB: the used ring's and the
	// buffers' bits lie far past the end of the file.
	if err := setLogBase(f, memfdOf(t, 4096), 1<<20); err == nil {
		f.Set(SetFeatures, U64(f.Acked|FeatureLogAll), nil)
		c.GetAttr(RootID)
		if err := d.CheckNoCrash(); err != nil {
			t.Fatal(err)
		}
		t.Fatal("SET_LOG_BASE of a log larger than its file was accepted")
	}
	// Refused by closing the connection.
	waitConnectionEnded(t, d, f, `dirty log.*past the end of its file`)
}

// TestLogShrunk: the front-end shrinks the dirty log's file after
// SET_LOG_BASE. Marking the log then faults; the queue that was marking
// stops with an error (logged, and signalled on its error eventfd) instead
// of the daemon dying, GET_VRING_BASE still stops it (with workers, chains
// in flight on the broken queue still get through), and it runs again once
// the front-end restarts it with the log whole again.
func TestLogShrunk(t *testing.T) {
	for _, workers := range []string{"0", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			testLogShrunk(t, "--thread-pool-size="+workers)
		})
	}
}

func testLogShrunk(t *testing.T, args ...string) {
	d, f, _ := startAndConnect(t, logOpts, args...)
	q, err := f.StartQueue(1, 64)
	if err != nil {
		t.Fatal(err)
	}
	c := NewFUSE(q)
	if _, err := c.Init(); err != nil {
		t.Fatal(err)
	}
	// The used ring is logged at a guest address of the front-end's
	// choosing: one whose bits lie in the log's third page, while those of
	// guest memory (64 MiB) lie in its first. Cutting the log to its first
	// page lets the buffers be marked and makes marking the used ring
	// fault, which the queue does holding its lock.
	size := int64(3 * 4096)
	logFD := memfdOf(t, size)
	if err := setLogBase(f, logFD, uint64(size)); err != nil {
		t.Fatalf("SET_LOG_BASE: %v", err)
	}
	a := q.Addr()
	a.Flags, a.LogGuestA = 1, 2*4096*8*4096
	if err := f.Set(SetVringAddr, a.Encode(), nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Set(SetFeatures, U64(f.Acked|FeatureLogAll), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAttr(RootID); err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(logFD, 4096); err != nil {
		t.Fatal(err)
	}
	// A burst, made available at once: with workers, several chains are
	// served at once, and each faults when it is returned.
	heads, used := getattrChains(t, f, q, c, 16)
	publishAndWaitBroken(t, d, q, heads)

	// The front-end makes the log whole again and restarts the queue.
	f.Conn.Timeout = 5 * time.Second
	base, err := f.GetVringBase(1)
	if err != nil {
		t.Fatalf("GET_VRING_BASE of the broken queue: %v", err)
	}
	if err := unix.Ftruncate(logFD, size); err != nil {
		t.Fatal(err)
	}
	for q.Pending() { // chains returned before the first fault
		q.WaitTimeout(time.Second)
	}
	q.FreeDescs(used)
	q.StoreAvailIdx(uint16(base))
	if err := f.ConfigureQueue(q); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAttr(RootID); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	closeAndCheck(t, d, f)
}

// TestGuestMemoryShrunk: the front-end shrinks the guest memory's file
// after SET_MEM_TABLE, so that the buffers of requests lie past its end.
// Reading them faults, on the kick poller or on a worker; the queue stops
// with an error instead of the daemon dying, the other queues whose memory
// is whole serve on, and the broken queue serves again once restarted.
func TestGuestMemoryShrunk(t *testing.T) {
	for _, workers := range []string{"0", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			testGuestMemoryShrunk(t, "--thread-pool-size="+workers)
		})
	}
}

func testGuestMemoryShrunk(t *testing.T, args ...string) {
	d, f, _ := startAndConnect(t, Options{}, args...)
	hi, err := f.StartQueue(0, 64)
	if err != nil {
		t.Fatal(err)
	}
	q, err := f.StartQueue(1, 64)
	if err != nil {
		t.Fatal(err)
	}
	c := NewFUSE(q)
	if _, err := c.Init(); err != nil {
		t.Fatal(err)
	}
	// The requests are written while their buffers exist; the rings live
	// in the lower half of the memory, buffers in the upper half. With
	// workers, the first chain of a burst goes to one and the last is
	// served on the poller.
	heads, used := getattrChains(t, f, q, c, 4)
	half := int64(f.Mem.Size / 2)
	if err := unix.Ftruncate(f.Mem.FD, half); err != nil {
		t.Fatal(err)
	}
	// Publish and kick touch only the rings, below the cut.
	publishAndWaitBroken(t, d, q, heads)

	// Whole again (the cut pages come back zeroed): the other queue
	// serves, and the broken one after a restart.
	if err := unix.Ftruncate(f.Mem.FD, int64(f.Mem.Size)); err != nil {
		t.Fatal(err)
	}
	hc := NewFUSE(hi)
	for range 1000 {
		hc.NextUnique()
	}
	if _, err := hc.GetAttr(RootID); err != nil {
		t.Fatalf("queue 0 after queue 1 broke: %v", err)
	}
	base, err := f.GetVringBase(1)
	if err != nil {
		t.Fatal(err)
	}
	for q.Pending() { // no chain can have been returned, but if one was
		q.WaitTimeout(time.Second)
	}
	q.FreeDescs(used)
	q.StoreAvailIdx(uint16(base))
	if err := f.ConfigureQueue(q); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAttr(RootID); err != nil {
		t.Fatalf("queue 1 after its restart: %v", err)
	}
	closeAndCheck(t, d, f)
}

// getattrChains writes n GETATTR chains of c's into q without making them
// available, and returns their heads and all the descriptors they took.
// waitConnectionEnded waits for the daemon to end the connection and exit
// without a crash, having logged a line that matches re.
func waitConnectionEnded(t *testing.T, d *Daemon, f *Frontend, re string) {
	t.Helper()
	if err := f.Conn.WaitClosed(timeout); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Wait(timeout); err != nil {
		t.Fatal(err)
	}
	if err := d.CheckNoCrash(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, d, re)
}

// publishAndWaitBroken makes the chains heads available on queue 1 (q) at
// once and kicks it, then waits for the daemon to break the queue on a
// fault: logged, signalled on the queue's error eventfd, and the daemon
// still alive.
func publishAndWaitBroken(t *testing.T, d *Daemon, q *Queue, heads []uint16) {
	t.Helper()
	for _, h := range heads {
		q.SetAvailEntry(q.AvailIdx(), h)
		q.StoreAvailIdx(q.AvailIdx() + 1)
	}
	if err := q.Kick(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, d, `queue broken; no longer processing it.*queue=1.*fault`)
	if n, err := q.WaitError(timeout); err != nil || n == 0 {
		t.Errorf("error eventfd: %d, %v; want the queue's failure signalled", n, err)
	}
	if err := d.CheckNoCrash(); err != nil {
		t.Fatal(err)
	}
}

func getattrChains(t *testing.T, f *Frontend, q *Queue, c *FUSE, n int) (heads, descs []uint16) {
	t.Helper()
	for range n {
		req := NewFUSERequest(OpGetattr, RootID).Raw(make([]byte, 16))
		req.Header.Unique = c.NextUnique()
		b := req.Encode()
		addr, err := f.Mem.Put(b)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := f.Mem.Buffer(4096)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := q.AllocDescs(2)
		if err != nil {
			t.Fatal(err)
		}
		q.SetDesc(ids[0], Desc{Addr: addr, Len: uint32(len(b)), Flags: DescNext, Next: ids[1]})
		q.SetDesc(ids[1], Desc{Addr: reply, Len: 4096, Flags: DescWrite})
		heads = append(heads, ids[0])
		descs = append(descs, ids...)
	}
	return heads, descs
}

// TestGuestMemoryShrunkBeforeStart: the front-end shrinks guest memory to
// nothing and then starts a queue. Starting it reads the used ring's index
// on the connection's own goroutine, which faults: the back-end refuses
// the message by ending the connection, and the daemon exits without a
// crash.
func TestGuestMemoryShrunkBeforeStart(t *testing.T) {
	d, f, _ := startAndConnect(t, Options{})
	q, err := f.NewQueue(1, 64) // laid out while the memory is whole
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(f.Mem.FD, 0); err != nil {
		t.Fatal(err)
	}
	// From here on neither side may touch the memory: only messages.
	if err := f.ConfigureQueue(q); err == nil {
		t.Fatal("a queue in guest memory cut to nothing was started")
	}
	waitConnectionEnded(t, d, f, `SET_VRING_KICK: memory fault`)
}
