package hostile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	vf "github.com/ferryfs/ferryfs/tests/vhostfront"
	"github.com/ferryfs/ferryfs/vhostuser"
	"github.com/ferryfs/ferryfs/virtqueue"
)

// The fuzz target runs the back-end in process, on a socketpair, with a
// small fake device, and feeds it the fuzzer's byte stream as vhost-user
// messages. It does not recover: a panic anywhere (the message loop, a ring
// goroutine, a worker) crashes the fuzz run, which is what we want.
//
// The harness walks the stream as the back-end would (12-byte headers, the
// size field) only to decide which file descriptors go with each message,
// so that the back-end gets as far as mapping memory and running rings:
//   - SET_MEM_TABLE: one memfd per region the payload announces (at most
//     8), each sized to the region's mmap_offset+size;
//   - ADD_MEM_REG: one memfd sized the same way;
//   - SET_VRING_KICK/CALL/ERR: one eventfd unless the "invalid" bit is set;
//   - SET_LOG_BASE, SET_LOG_FD, SET_BACKEND_REQ_FD: one memfd;
//   - bit 16 of the flags word adds one more descriptor, bit 17 drops one
//     (the back-end ignores flag bits it does not know);
//   - bit 18 shrinks the message's memfds to nothing once the next message
//     is sent (or the stream ends), as a front-end may do to guest memory or
//     the dirty log after the back-end mapped them: accesses there fault,
//     which must break a ring or the connection, never the process.
//
// Every memfd starts with the fuzzer's second input (up to 64 KiB), so the
// rings and descriptors the back-end reads are fuzzer-controlled too. After
// each message every kick eventfd sent so far is kicked.
//
// A region the harness cannot size (mmap_offset+size above 1 GiB, or an
// offset or size the harness cannot read) gets a one-page memfd, smaller
// than the region: the back-end must refuse it (mapping it would let the
// first access past the end of the file raise SIGBUS).
func FuzzVhostUserMessages(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.stream, s.memory)
	}
	f.Fuzz(func(t *testing.T, stream, memory []byte) {
		runFuzzSession(t, stream, memory)
	})
}

// fuzzDevice is a Device that reads what a chain offers and writes into
// what it allows, within a budget.
type fuzzDevice struct {
	served atomic.Int64
	config []byte
}

func (d *fuzzDevice) Features() uint64 { return 1 }
func (d *fuzzDevice) Queues() int      { return 3 }
func (d *fuzzDevice) Config() []byte   { return d.config }
func (d *fuzzDevice) Reset()           {}

func (d *fuzzDevice) Serve(q int, c *virtqueue.Chain) uint32 {
	d.served.Add(1)
	const budget = 4096
	sum, left := 0, budget
	for _, b := range c.Readable {
		n := min(len(b), left)
		for _, x := range b[:n] {
			sum += int(x)
		}
		left -= n
	}
	written, left := 0, budget
	for _, b := range c.Writable {
		n := min(len(b), left)
		for i := range b[:n] {
			b[i] = byte(i)
		}
		written += n
		left -= n
	}
	// Sometimes claim more than the chain holds: Push must clamp it.
	return uint32(written + sum%3)
}

const (
	fuzzMemMax    = 64 << 10 // bytes of the memory input used
	fuzzRegionMax = 1 << 30  // largest region (offset+size) the harness backs
	flagMoreFD    = 1 << 16
	flagFewerFD   = 1 << 17
	flagShrink    = 1 << 18
)

// fuzzFDs makes the descriptors for one message (see the fuzz target's
// comment). kick is the eventfd sent with SET_VRING_KICK, or -1.
func fuzzFDs(t *testing.T, req vhostuser.Request, flags uint32, payload, memory []byte) (fds []int, kick int) {
	kick = -1
	le := binary.LittleEndian
	memfd := func(size uint64) int {
		fd, err := unix.MemfdCreate("fuzz-guest", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			t.Fatal(err)
		}
		if len(memory) > 0 {
			unix.Pwrite(fd, memory[:min(len(memory), fuzzMemMax, int(size))], 0)
		}
		return fd
	}
	eventfd := func() int {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	// regionNeed returns the size of the memfd backing the region at p:
	// offset+size, or a page when the harness cannot back it.
	regionNeed := func(p []byte) uint64 {
		if len(p) < 32 {
			return 4096
		}
		size, off := le.Uint64(p[8:]), le.Uint64(p[24:])
		need := size + off
		if size == 0 || need < size || need > fuzzRegionMax {
			return 4096
		}
		return need
	}
	switch req {
	case vhostuser.SetMemTable:
		if len(payload) < 4 {
			break
		}
		n := int(min(le.Uint32(payload), 8))
		for i := 0; i < n; i++ {
			var p []byte
			if off := 8 + 32*i; off < len(payload) {
				p = payload[off:]
			}
			fds = append(fds, memfd(regionNeed(p)))
		}
	case vhostuser.AddMemReg:
		var p []byte
		if len(payload) > 8 {
			p = payload[8:]
		}
		fds = append(fds, memfd(regionNeed(p)))
	case vhostuser.SetVringKick, vhostuser.SetVringCall, vhostuser.SetVringErr:
		if len(payload) >= 8 && le.Uint64(payload)&0x100 != 0 {
			break
		}
		fd := eventfd()
		fds = append(fds, fd)
		if req == vhostuser.SetVringKick {
			kick = fd
		}
	case vhostuser.SetLogBase, vhostuser.SetLogFD, vhostuser.SetBackendReqFD:
		fds = append(fds, memfd(4096))
	}
	if flags&flagMoreFD != 0 {
		fds = append(fds, eventfd())
	}
	if flags&flagFewerFD != 0 && len(fds) > 0 {
		if fds[len(fds)-1] == kick {
			kick = -1
		}
		unix.Close(fds[len(fds)-1])
		fds = fds[:len(fds)-1]
	}
	return fds, kick
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// runFuzzSession runs one session and returns how many chains the device
// served.
func runFuzzSession(t *testing.T, stream, memory []byte) int64 {
	baseFDs := countFDs(t)

	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	front, back := sp[0], sp[1]
	dev := &fuzzDevice{config: make([]byte, 44)}
	copy(dev.config, "fuzz")
	be := vhostuser.New(dev, vhostuser.Options{Workers: 2, Logger: slog.New(slog.DiscardHandler)})
	served := make(chan error, 1)
	go func() { served <- be.Serve(back) }()

	// Read and drop the back-end's replies (and any descriptors).
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 8192)
		oob := make([]byte, unix.CmsgSpace(4*16))
		for {
			n, oobn, _, _, err := unix.Recvmsg(front, buf, oob, unix.MSG_CMSG_CLOEXEC)
			if oobn > 0 {
				if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
					for i := range msgs {
						if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
							closeFDs(fds)
						}
					}
				}
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return
			}
		}
	}()

	var kicks, shrink []int
	le := binary.LittleEndian
	one := le.AppendUint64(nil, 1)
	shrinkNow := func() {
		for _, fd := range shrink {
			unix.Ftruncate(fd, 0) // fails harmlessly on an eventfd
			unix.Close(fd)
		}
		shrink = shrink[:0]
	}
	for pos := 0; pos < len(stream); {
		msg := stream[pos:]
		var fds []int
		kick := -1
		shrinkNext := false
		if len(msg) >= vf.HeaderSize {
			shrinkNext = le.Uint32(msg[4:])&flagShrink != 0
			size := uint64(le.Uint32(msg[8:]))
			end := vf.HeaderSize + int(min(size, uint64(len(msg)-vf.HeaderSize)))
			msg = msg[:end]
			fds, kick = fuzzFDs(t, vhostuser.Request(le.Uint32(msg)), le.Uint32(msg[4:]), msg[vf.HeaderSize:], memory)
		}
		pos += len(msg)
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		_, err := unix.SendmsgN(front, msg, oob, nil, unix.MSG_NOSIGNAL)
		shrinkNow()
		for _, fd := range fds {
			if shrinkNext && fd != kick {
				shrink = append(shrink, fd)
			} else if fd != kick {
				unix.Close(fd) // the back-end has its own copy now
			}
		}
		if kick >= 0 {
			kicks = append(kicks, kick)
		}
		if err != nil {
			break // the back-end hung up: it refused something
		}
		for _, k := range kicks {
			unix.Write(k, one)
		}
	}
	shrinkNow()
	unix.Shutdown(front, unix.SHUT_WR)

	select {
	case <-served:
	case <-time.After(20 * time.Second):
		t.Fatalf("Serve did not return within 20s of the front-end hanging up")
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatalf("the back-end's end of the socket stayed open after Serve returned")
	}
	unix.Close(front)
	closeFDs(kicks)

	// Serve must leave nothing behind: no descriptor, no mapping of guest
	// memory.
	if n := countFDs(t); n != baseFDs {
		t.Fatalf("%d file descriptors open after the session, %d before: Serve leaked %d", n, baseFDs, n-baseFDs)
	}
	if n := countGuestMappings(t); n != 0 {
		t.Fatalf("%d mappings of guest memory left after Serve returned", n)
	}
	return dev.served.Load()
}

// TestFuzzHarness checks that the fuzz harness gets the back-end as far as
// serving chains from the rings it sets up, so that the fuzzer starts from
// there.
func TestFuzzHarness(t *testing.T) {
	seed := fuzzSeeds()[0]
	// The rings are stopped by later messages of the session, possibly
	// before both chains were taken: a run serves 0, 1 or 2 of them. Five
	// chains in at most 25 runs fails only when the harness rarely gets as
	// far as serving.
	var total int64
	runs := 0
	for ; runs < 25 && total < 5; runs++ {
		total += runFuzzSession(t, seed.stream, seed.memory)
	}
	if total < 5 {
		t.Errorf("%d runs of the seed session served %d chains, want at least 5", runs, total)
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own descriptor
}

func countGuestMappings(t *testing.T) int {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "memfd:fuzz-guest") {
			n++
		}
	}
	return n
}

type fuzzSeed struct{ stream, memory []byte }

// fuzzSeeds are a QEMU-like session that gets two rings running with
// chains to serve, and a few single messages.
func fuzzSeeds() []fuzzSeed {
	le := binary.LittleEndian
	var s []byte
	msg := func(req vf.Request, flags uint32, payload []byte) {
		s = append(s, vf.EncodeHeader(req, vf.FlagVersion|flags, uint32(len(payload)))...)
		s = append(s, payload...)
	}
	const user = 0x7f00_0000_0000
	msg(vf.GetFeatures, 0, nil)
	msg(vf.GetProtocolFeatures, 0, nil)
	msg(vf.SetProtocolFeatures, 0, vf.U64(vf.ProtocolReplyAck|vf.ProtocolMQ|vf.ProtocolConfig|vf.ProtocolResetDevice|vf.ProtocolConfigureMemSlots))
	msg(vf.GetQueueNum, 0, nil)
	msg(vf.SetOwner, vf.FlagNeedReply, nil)
	msg(vf.SetFeatures, vf.FlagNeedReply, vf.U64(vf.FeatureVersion1|vf.FeatureIndirectDesc|vf.FeatureEventIdx|vf.FeatureProtocolFeatures))
	msg(vf.GetMaxMemSlots, 0, nil)
	msg(vf.SetMemTable, vf.FlagNeedReply, vf.MemTable(vf.Region{GuestAddr: 0, Size: 1 << 20, UserAddr: user}))
	for q := uint32(0); q < 2; q++ {
		base := uint64(0x3000 * q)
		msg(vf.SetVringNum, vf.FlagNeedReply, vf.VringState(q, 8))
		msg(vf.SetVringBase, vf.FlagNeedReply, vf.VringState(q, 0))
		msg(vf.SetVringAddr, vf.FlagNeedReply, vf.VringAddr{Index: q, Desc: user + 0x1000 + base, Avail: user + 0x2000 + base, Used: user + 0x3000 + base}.Encode())
		msg(vf.SetVringCall, vf.FlagNeedReply, vf.U64(uint64(q)))
		msg(vf.SetVringKick, vf.FlagNeedReply, vf.U64(uint64(q)))
		msg(vf.SetVringEnable, vf.FlagNeedReply, vf.VringState(q, 1))
	}
	cfg := make([]byte, 12+8)
	le.PutUint32(cfg[4:], 8)
	msg(vf.GetConfig, 0, cfg)
	msg(vf.AddMemReg, vf.FlagNeedReply, vf.SingleRegion(vf.Region{GuestAddr: 1 << 30, Size: 1 << 16, UserAddr: user + 1<<30}))
	msg(vf.SetMemTable, vf.FlagNeedReply, vf.MemTable(vf.Region{GuestAddr: 0, Size: 1 << 20, UserAddr: user}))
	msg(vf.GetVringBase, 0, vf.VringState(1, 0))
	msg(vf.RemMemReg, vf.FlagNeedReply, vf.SingleRegion(vf.Region{GuestAddr: 1 << 30, Size: 1 << 16, UserAddr: user + 1<<30}))
	msg(vf.ResetDevice, 0, nil)
	session := s

	// Guest memory: queue 0 has a two-descriptor chain, queue 1 an
	// indirect one, each made available.
	mem := make([]byte, 0xb000)
	desc := func(at int, addr uint64, n uint32, flags, next uint16) {
		le.PutUint64(mem[at:], addr)
		le.PutUint32(mem[at+8:], n)
		le.PutUint16(mem[at+12:], flags)
		le.PutUint16(mem[at+14:], next)
	}
	desc(0x1000, 0x8000, 64, vf.DescNext, 1)
	desc(0x1010, 0x9000, 128, vf.DescWrite, 0)
	le.PutUint16(mem[0x2002:], 1) // avail idx 1, ring[0] = 0
	desc(0x4000, 0xa000, 32, vf.DescIndirect, 0)
	desc(0xa000, 0x8000, 64, vf.DescNext, 1)
	desc(0xa010, 0x9000, 128, vf.DescWrite, 0)
	le.PutUint16(mem[0x5002:], 1)

	single := func(req vf.Request, flags uint32, payload []byte) []byte {
		return append(vf.EncodeHeader(req, flags, uint32(len(payload))), payload...)
	}
	// The same session with the first memory table shrunk once the
	// rings are being set up, and with the second one shrunk while they
	// run.
	shrunk := func(nth int) []byte {
		out := append([]byte(nil), session...)
		for pos, seen := 0, 0; pos+vf.HeaderSize <= len(out); {
			if vf.Request(le.Uint32(out[pos:])) == vf.SetMemTable {
				if seen == nth {
					le.PutUint32(out[pos+4:], le.Uint32(out[pos+4:])|flagShrink)
				}
				seen++
			}
			pos += vf.HeaderSize + int(le.Uint32(out[pos+8:]))
		}
		return out
	}
	return []fuzzSeed{
		{session, mem},
		{shrunk(0), mem},
		{shrunk(1), mem},
		{session[:len(session)/2], mem},
		{single(vf.GetFeatures, vf.FlagVersion, nil), nil},
		{single(vf.SetFeatures, 2, vf.U64(1)), nil},
		{single(vf.SetMemTable, vf.FlagVersion|flagMoreFD, vf.MemTable(vf.Region{Size: 4096})), nil},
		{single(vf.SetVringKick, vf.FlagVersion, vf.U64(0x100)), nil},
		{bytes.Repeat([]byte{0xff}, 40), nil},
	}
}
