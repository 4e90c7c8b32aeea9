package hostile

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	vf "github.com/ferryfs/ferryfs/tests/vhostfront"
)

// newEventfd returns an eventfd closed at the end of the test.
func newEventfd(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// newMemfd returns a memfd of size bytes closed at the end of the test.
func newMemfd(t *testing.T, size int64) int {
	t.Helper()
	fd, err := unix.MemfdCreate("hostile", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	return fd
}

// send sends one message asking for a REPLY_ACK (negotiated by start), so
// that a back-end accepting it answers, which closedWith would notice.
func (e *env) send(req vf.Request, payload []byte, fds ...int) {
	e.t.Helper()
	if err := e.f.Conn.Send(req, vf.FlagNeedReply, payload, fds); err != nil {
		e.t.Fatalf("sending %d: %v", req, err)
	}
}

// raw sends b as is.
func (e *env) raw(b []byte, fds ...int) {
	e.t.Helper()
	if err := e.f.Conn.SendRaw(b, fds); err != nil {
		e.t.Fatalf("sending: %v", err)
	}
}

// TestProtocolViolations sends, on a connection that served a request,
// messages that break the vhost-user protocol: the back-end closes the
// connection with an error naming the problem in its log, and the daemon
// exits without crashing.
func TestProtocolViolations(t *testing.T) {
	const memSize = 64 << 20
	region := func(e *env) vf.Region { return e.f.Mem.Region() }
	cases := []struct {
		name    string
		send    func(t *testing.T, e *env)
		wantLog string
	}{
		{"payload larger than 4096", func(t *testing.T, e *env) {
			e.raw(append(vf.EncodeHeader(vf.GetFeatures, vf.FlagVersion, 4097), make([]byte, 4097)...))
		}, `payload of 4097 bytes, more than 4096`},
		{"payload size 0xffffffff", func(t *testing.T, e *env) {
			e.raw(vf.EncodeHeader(vf.SetFeatures, vf.FlagVersion, 0xffffffff))
		}, `payload of 4294967295 bytes`},
		{"version 0", func(t *testing.T, e *env) {
			e.raw(vf.EncodeHeader(vf.GetFeatures, 0, 0))
		}, `protocol version 0, want 1`},
		{"version 2", func(t *testing.T, e *env) {
			e.raw(vf.EncodeHeader(vf.GetFeatures, 2|vf.FlagNeedReply, 0))
		}, `protocol version 2, want 1`},
		{"version 3", func(t *testing.T, e *env) {
			e.raw(vf.EncodeHeader(vf.GetQueueNum, 3, 0))
		}, `protocol version 3, want 1`},

		{"SET_MEM_TABLE with more fds than regions", func(t *testing.T, e *env) {
			e.send(vf.SetMemTable, vf.MemTable(region(e)), e.f.Mem.FD, newMemfd(t, memSize))
		}, `1 regions but 2 file descriptors`},
		{"SET_MEM_TABLE with fewer fds than regions", func(t *testing.T, e *env) {
			r2 := vf.Region{GuestAddr: 1 << 40, Size: 1 << 20, UserAddr: 1 << 41}
			e.send(vf.SetMemTable, vf.MemTable(region(e), r2), e.f.Mem.FD)
		}, `2 regions but 1 file descriptors`},
		{"SET_MEM_TABLE without fds", func(t *testing.T, e *env) {
			e.send(vf.SetMemTable, vf.MemTable(region(e)))
		}, `1 regions but 0 file descriptors`},
		{"SET_MEM_TABLE with 0 regions", func(t *testing.T, e *env) {
			e.send(vf.SetMemTable, vf.MemTable(), e.f.Mem.FD)
		}, `0 regions, want 1 to 8`},
		{"SET_MEM_TABLE with 9 regions", func(t *testing.T, e *env) {
			rs := make([]vf.Region, 9)
			for i := range rs {
				rs[i] = vf.Region{GuestAddr: uint64(i) << 30, Size: 4096, UserAddr: uint64(i) << 30}
			}
			e.send(vf.SetMemTable, vf.MemTable(rs...), e.f.Mem.FD)
		}, `9 regions, want 1 to 8`},
		{"SET_MEM_TABLE with a short region array", func(t *testing.T, e *env) {
			p := vf.MemTable(region(e))
			binary.LittleEndian.PutUint32(p, 2)
			e.send(vf.SetMemTable, p, e.f.Mem.FD, newMemfd(t, 4096))
		}, `2 regions in 40 bytes`},
		{"overlapping regions", func(t *testing.T, e *env) {
			r := region(e)
			r2 := vf.Region{GuestAddr: r.GuestAddr + memSize/2, Size: 1 << 20, UserAddr: 1 << 45}
			e.send(vf.SetMemTable, vf.MemTable(r, r2), e.f.Mem.FD, newMemfd(t, 1<<20))
		}, `overlap`},
		{"identical regions", func(t *testing.T, e *env) {
			e.send(vf.SetMemTable, vf.MemTable(region(e), region(e)), e.f.Mem.FD, e.f.Mem.FD)
		}, `overlap`},
		{"region size 0", func(t *testing.T, e *env) {
			r := region(e)
			r.Size = 0
			e.send(vf.SetMemTable, vf.MemTable(r), e.f.Mem.FD)
		}, `bad size`},
		{"region wrapping around the address space", func(t *testing.T, e *env) {
			r := region(e)
			r.GuestAddr = ^uint64(0) - 4095
			e.send(vf.SetMemTable, vf.MemTable(r), e.f.Mem.FD)
		}, `wraps around`},
		{"region fd that cannot be mapped (eventfd)", func(t *testing.T, e *env) {
			e.send(vf.SetMemTable, vf.MemTable(region(e)), newEventfd(t))
		}, `mmap memory region`},
		{"region fd of a read-only file", func(t *testing.T, e *env) {
			p := filepath.Join(t.TempDir(), "ro")
			if err := os.WriteFile(p, make([]byte, memSize), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			e.send(vf.SetMemTable, vf.MemTable(region(e)), int(f.Fd()))
		}, `mmap memory region`},
		{"SET_MEM_TABLE that no longer holds the running rings", func(t *testing.T, e *env) {
			r := region(e)
			r.UserAddr += 1 << 40 // the rings' user addresses are outside it now
			e.send(vf.SetMemTable, vf.MemTable(r), e.f.Mem.FD)
		}, `outside mapped memory`},
		{"mmap offset beyond the end of the file", func(t *testing.T, e *env) {
			r := region(e)
			r.MmapOffset = memSize
			e.send(vf.SetMemTable, vf.MemTable(r), e.f.Mem.FD)
		}, `(?i)(offset|beyond|past|exceeds|larger than|end of).*(file|memfd)|(file|memfd).*(size|short|small)`},

		{"SET_VRING_NUM not a power of 2", func(t *testing.T, e *env) {
			e.send(vf.SetVringNum, vf.VringState(2, 100))
		}, `size 100 is not a power of 2`},
		{"SET_VRING_NUM 65536", func(t *testing.T, e *env) {
			e.send(vf.SetVringNum, vf.VringState(2, 65536))
		}, `size 65536 is not a power of 2 up to 32768`},
		{"SET_VRING_NUM 0", func(t *testing.T, e *env) {
			e.send(vf.SetVringNum, vf.VringState(2, 0))
		}, `size 0 is not a power of 2`},
		{"SET_VRING_NUM on a running queue", func(t *testing.T, e *env) {
			e.send(vf.SetVringNum, vf.VringState(1, 64))
		}, `queue 1 is running`},
		{"SET_VRING_BASE beyond 16 bits", func(t *testing.T, e *env) {
			e.send(vf.SetVringBase, vf.VringState(2, 0x10000))
		}, `base 65536 out of range`},
		{"SET_VRING_ADDR outside memory, then kick", func(t *testing.T, e *env) {
			if err := e.f.Set(vf.SetVringNum, vf.VringState(2, 64), nil); err != nil {
				t.Fatal(err)
			}
			a := vf.VringAddr{Index: 2, Desc: 0x1000, Used: 0x2000, Avail: 0x3000}
			if err := e.f.Set(vf.SetVringAddr, a.Encode(), nil); err != nil {
				t.Fatal(err)
			}
			e.send(vf.SetVringKick, vf.U64(2), newEventfd(t))
		}, `queue 2 descriptor ring at user address 0x1000: guest address range outside mapped memory`},
		{"SET_VRING_ADDR with rings straddling the end of memory, then kick", func(t *testing.T, e *env) {
			if err := e.f.Set(vf.SetVringNum, vf.VringState(2, 64), nil); err != nil {
				t.Fatal(err)
			}
			end := e.f.Mem.UserAddr + memSize
			a := vf.VringAddr{Index: 2, Desc: e.f.Mem.UserAddr + 0x10000, Used: end - 64, Avail: e.f.Mem.UserAddr + 0x20000}
			if err := e.f.Set(vf.SetVringAddr, a.Encode(), nil); err != nil {
				t.Fatal(err)
			}
			e.send(vf.SetVringKick, vf.U64(2), newEventfd(t))
		}, `used ring at user address .*outside mapped memory`},
		{"SET_VRING_ADDR with misaligned rings, then kick", func(t *testing.T, e *env) {
			if err := e.f.Set(vf.SetVringNum, vf.VringState(2, 64), nil); err != nil {
				t.Fatal(err)
			}
			a := vf.VringAddr{Index: 2, Desc: e.f.Mem.UserAddr + 0x10008, Used: e.f.Mem.UserAddr + 0x30002, Avail: e.f.Mem.UserAddr + 0x20001}
			if err := e.f.Set(vf.SetVringAddr, a.Encode(), nil); err != nil {
				t.Fatal(err)
			}
			e.send(vf.SetVringKick, vf.U64(2), newEventfd(t))
		}, `misaligned ring addresses`},
		{"SET_VRING_ADDR outside memory on a running queue", func(t *testing.T, e *env) {
			a := e.rq.Addr()
			a.Desc = 0x1000
			e.send(vf.SetVringAddr, a.Encode())
		}, `queue 1 descriptor ring at user address 0x1000`},
		{"SET_VRING_ADDR with unknown flags", func(t *testing.T, e *env) {
			a := e.rq.Addr()
			a.Index, a.Flags = 2, 2
			e.send(vf.SetVringAddr, a.Encode())
		}, `unknown ring address flags 0x2`},

		{"SET_VRING_NUM index out of range", func(t *testing.T, e *env) {
			e.send(vf.SetVringNum, vf.VringState(17, 64))
		}, `queue index 17 out of range \(17 queues\)`},
		{"SET_VRING_ADDR index out of range", func(t *testing.T, e *env) {
			a := e.rq.Addr()
			a.Index = 1000
			e.send(vf.SetVringAddr, a.Encode())
		}, `queue index 1000 out of range`},
		{"SET_VRING_BASE index 0xffffffff", func(t *testing.T, e *env) {
			e.send(vf.SetVringBase, vf.VringState(0xffffffff, 0))
		}, `queue index 4294967295 out of range`},
		{"SET_VRING_KICK index out of range", func(t *testing.T, e *env) {
			e.send(vf.SetVringKick, vf.U64(0xff), newEventfd(t))
		}, `queue index 255 out of range`},
		{"SET_VRING_CALL index out of range", func(t *testing.T, e *env) {
			e.send(vf.SetVringCall, vf.U64(0x80), newEventfd(t))
		}, `queue index 128 out of range`},
		{"SET_VRING_ENABLE index out of range", func(t *testing.T, e *env) {
			e.send(vf.SetVringEnable, vf.VringState(17, 1))
		}, `queue index 17 out of range`},
		{"GET_VRING_BASE index out of range", func(t *testing.T, e *env) {
			e.send(vf.GetVringBase, vf.VringState(99, 0))
		}, `queue index 99 out of range`},
		{"SET_VRING_KICK with unknown payload bits", func(t *testing.T, e *env) {
			e.send(vf.SetVringKick, vf.U64(1<<40|1), newEventfd(t))
		}, `unknown bits`},
		{"SET_VRING_KICK without an fd", func(t *testing.T, e *env) {
			e.send(vf.SetVringKick, vf.U64(1))
		}, `0 file descriptors, want 1`},
		{"SET_VRING_KICK with two fds", func(t *testing.T, e *env) {
			e.send(vf.SetVringKick, vf.U64(1), newEventfd(t), newEventfd(t))
		}, `2 file descriptors, want 1`},
		{"SET_VRING_KICK invalid-fd flag with an fd", func(t *testing.T, e *env) {
			e.send(vf.SetVringKick, vf.U64(1|vf.VringFDInvalid), newEventfd(t))
		}, `invalid-descriptor flag set but 1 descriptors sent`},
		{"SET_VRING_ENABLE 2", func(t *testing.T, e *env) {
			e.send(vf.SetVringEnable, vf.VringState(1, 2))
		}, `enable value 2`},

		{"unknown request 0", func(t *testing.T, e *env) { e.send(0, nil) }, `request 0: unsupported message`},
		{"unknown request 99", func(t *testing.T, e *env) { e.send(99, vf.U64(1)) }, `request 99: unsupported message`},
		{"unknown request 0xffffffff", func(t *testing.T, e *env) { e.send(0xffffffff, nil) }, `request 4294967295: unsupported message`},
		{"SET_LOG_BASE without LOG_SHMFD", func(t *testing.T, e *env) {
			e.send(vf.SetLogBase, make([]byte, 16), newMemfd(t, 4096))
		}, `SET_LOG_BASE without VHOST_USER_PROTOCOL_F_LOG_SHMFD`},
		{"SET_FEATURES with features not offered", func(t *testing.T, e *env) {
			e.send(vf.SetFeatures, vf.U64(e.f.Acked|1<<63))
		}, `features 0x8000000000000000 we did not offer`},
		{"SET_PROTOCOL_FEATURES with features not offered", func(t *testing.T, e *env) {
			e.send(vf.SetProtocolFeatures, vf.U64(e.f.ProtoAcked|1<<62))
		}, `protocol features 0x4000000000000000 we did not offer`},

		{"SET_VRING_ADDR with a truncated payload", func(t *testing.T, e *env) {
			e.send(vf.SetVringAddr, e.rq.Addr().Encode()[:8])
		}, `SET_VRING_ADDR: payload of 8 bytes, want 40`},
		{"SET_FEATURES with a 4-byte payload", func(t *testing.T, e *env) {
			e.send(vf.SetFeatures, []byte{1, 2, 3, 4})
		}, `SET_FEATURES: payload of 4 bytes, want 8`},
		{"SET_VRING_NUM without payload", func(t *testing.T, e *env) {
			e.send(vf.SetVringNum, nil)
		}, `SET_VRING_NUM: payload of 0 bytes, want 8`},
		{"SET_MEM_TABLE with a 4-byte payload", func(t *testing.T, e *env) {
			e.send(vf.SetMemTable, []byte{1, 0, 0, 0}, e.f.Mem.FD)
		}, `SET_MEM_TABLE: payload of 4 bytes`},
		{"ADD_MEM_REG with a truncated payload", func(t *testing.T, e *env) {
			e.send(vf.AddMemReg, make([]byte, 20), newMemfd(t, 4096))
		}, `ADD_MEM_REG: payload of 20 bytes, want 40`},
		{"GET_CONFIG with a truncated payload", func(t *testing.T, e *env) {
			e.send(vf.GetConfig, make([]byte, 4))
		}, `GET_CONFIG: payload of 4 bytes, want at least 12`},
		{"GET_CONFIG of more than 256 bytes", func(t *testing.T, e *env) {
			p := make([]byte, 12)
			binary.LittleEndian.PutUint32(p[4:], 1000)
			e.send(vf.GetConfig, p)
		}, `config access of 1000 bytes`},
		{"payload cut short by a disconnect", func(t *testing.T, e *env) {
			e.raw(append(vf.EncodeHeader(vf.SetVringAddr, vf.FlagVersion, 40), make([]byte, 20)...))
			unix.Shutdown(e.f.Conn.FD(), unix.SHUT_WR)
		}, `read SET_VRING_ADDR payload: unexpected EOF`},

		{"a message with 20 fds", func(t *testing.T, e *env) {
			fds := make([]int, 20)
			for i := range fds {
				fds[i] = newEventfd(t)
			}
			e.send(vf.SetVringCall, vf.U64(1), fds...)
		}, `too many file descriptors`},
		{"a message with 9 fds", func(t *testing.T, e *env) {
			fds := make([]int, 9)
			for i := range fds {
				fds[i] = newEventfd(t)
			}
			e.send(vf.SetVringCall, vf.U64(1), fds...)
		}, `too many file descriptors`},
		{"fds spread over a header and its payload", func(t *testing.T, e *env) {
			// Five fds with the first bytes of the header, five with the
			// payload: ten in one message.
			fds := make([]int, 10)
			for i := range fds {
				fds[i] = newEventfd(t)
			}
			msg := append(vf.EncodeHeader(vf.SetVringCall, vf.FlagVersion, 8), vf.U64(1)...)
			e.raw(msg[:4], fds[:5]...)
			e.raw(msg[4:14], fds[5:]...)
			e.raw(msg[14:])
		}, `10 file descriptors, more than 8`},

		{"REM_MEM_REG of a region that does not exist", func(t *testing.T, e *env) {
			e.send(vf.RemMemReg, vf.SingleRegion(vf.Region{GuestAddr: 1 << 40, Size: 4096, UserAddr: 1 << 40}))
		}, `no memory region at 0x10000000000`},
		{"REM_MEM_REG of the region holding the rings", func(t *testing.T, e *env) {
			e.send(vf.RemMemReg, vf.SingleRegion(region(e)))
		}, `outside mapped memory`},
		{"ADD_MEM_REG overlapping guest memory", func(t *testing.T, e *env) {
			r := vf.Region{GuestAddr: region(e).GuestAddr + 4096, Size: 4096, UserAddr: 1 << 45}
			e.send(vf.AddMemReg, vf.SingleRegion(r), newMemfd(t, 4096))
		}, `overlap`},
		{"ADD_MEM_REG without an fd", func(t *testing.T, e *env) {
			e.send(vf.AddMemReg, vf.SingleRegion(vf.Region{GuestAddr: 1 << 40, Size: 4096, UserAddr: 1 << 45}))
		}, `0 file descriptors, want 1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, config{})
			e.serves(e.rq)
			e.alive()
			c.send(t, e)
			e.closedWith(c.wantLog)
		})
	}
}

// TestDisconnectMidMessage closes the socket in the middle of a message:
// the daemon notices, stops and exits without crashing.
func TestDisconnectMidMessage(t *testing.T) {
	cases := []struct {
		name string
		send func(e *env)
	}{
		{"inside the header", func(e *env) { e.raw(vf.EncodeHeader(vf.SetVringNum, vf.FlagVersion, 8)[:6]) }},
		{"after the header", func(e *env) { e.raw(vf.EncodeHeader(vf.SetVringAddr, vf.FlagVersion, 40)) }},
		{"inside the payload, with fds", func(e *env) {
			e.raw(append(vf.EncodeHeader(vf.SetMemTable, vf.FlagVersion, 40), make([]byte, 13)...), e.f.Mem.FD)
		}},
		{"with requests in flight", func(e *env) {
			for i := 0; i < 50; i++ {
				e.rq.Submit([][]byte{e.getattrReq()}, []int{4096}, vf.ChainOptions{})
			}
			e.raw(vf.EncodeHeader(vf.GetVringBase, vf.FlagVersion, 8)[:3])
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, config{})
			e.serves(e.rq)
			e.alive()
			c.send(e)
			e.f.Conn.Close()
			code, err := e.d.Wait(timeout)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.d.CheckNoCrash(); err != nil {
				t.Fatal(err)
			}
			if code != 0 && code != 1 {
				t.Errorf("the daemon exited with status %d", code)
			}
		})
	}
}

// TestRefusedRequestKeepsConnection sends requests the back-end refuses
// through REPLY_ACK without ending the connection (SET_CONFIG of a
// read-only configuration space) and GET_CONFIG outside the configuration
// space: the connection stays and the queues keep serving.
func TestRefusedRequestKeepsConnection(t *testing.T) {
	e := start(t, config{})
	err := e.f.Set(vf.SetConfig, make([]byte, 12+4), nil)
	if !vf.IsAckError(err) {
		t.Fatalf("SET_CONFIG: %v, want a REPLY_ACK refusal", err)
	}
	p := make([]byte, 12+4)
	binary.LittleEndian.PutUint32(p, 0xfffffff0)
	binary.LittleEndian.PutUint32(p[4:], 4)
	m, err := e.f.Conn.Call(vf.GetConfig, p, nil)
	if err != nil {
		t.Fatalf("GET_CONFIG outside the configuration space: %v", err)
	}
	if len(m.Payload) != 0 {
		t.Errorf("GET_CONFIG outside the configuration space: %d bytes, want an empty (failed) reply", len(m.Payload))
	}
	// A queue never configured can be stopped.
	if _, err := e.f.GetVringBase(5); err != nil {
		t.Errorf("GET_VRING_BASE of an unused queue: %v", err)
	}
	e.finish()
}

// TestMemRegionPastEndOfFile declares a memory region larger than the file
// backing it. Pages past the end of a shared file mapping cannot be
// touched (SIGBUS), so the back-end must refuse the table; if it accepts
// it, a guest buffer in those pages must not crash it.
func TestMemRegionPastEndOfFile(t *testing.T) {
	e := start(t, config{})
	e.serves(e.rq)
	const (
		base     = 1 << 32
		fileSize = 4096
	)
	small := newMemfd(t, fileSize)
	extra := vf.Region{GuestAddr: base, Size: 1 << 20, UserAddr: 1 << 45}
	err := e.f.Set(vf.SetMemTable, vf.MemTable(e.f.Mem.Region(), extra), []int{e.f.Mem.FD, small})
	if err != nil {
		// Refused: by REPLY_ACK or by closing the connection.
		t.Logf("SET_MEM_TABLE with a region past the end of its file: %v", err)
		if !vf.IsAckError(err) {
			e.closedWith(`(?i)file`)
			return
		}
		e.serves(e.rq)
		e.finish()
		return
	}
	t.Errorf("SET_MEM_TABLE accepted a 1 MiB region backed by a %d-byte file", fileSize)
	// The table was accepted: a request whose buffer lies in the region
	// but past the end of the file.
	req := e.getattrReq()
	ids, err := e.rq.AllocDescs(2)
	if err != nil {
		t.Fatal(err)
	}
	reply, _ := e.f.Mem.Buffer(4096)
	e.rq.SetDesc(ids[0], vf.Desc{Addr: base + 3*fileSize, Len: uint32(len(req)), Flags: vf.DescNext, Next: ids[1]})
	e.rq.SetDesc(ids[1], vf.Desc{Addr: reply, Len: 4096, Flags: vf.DescWrite})
	if err := e.rq.Publish(ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rq.WaitTimeout(3 * time.Second); err != nil {
		t.Logf("the chain did not come back: %v", err)
	}
	if _, err := e.d.Wait(2 * time.Second); err == nil {
		if cerr := e.d.CheckNoCrash(); cerr != nil {
			t.Fatalf("a guest buffer in the part of the region past the end of its file crashed the daemon: %v", cerr)
		}
		t.Fatalf("the daemon exited")
	}
	e.serves(e.rq)
	e.finish()
}

// cpuTime returns the CPU time (user+system) process pid has used, from
// /proc/pid/stat (in clock ticks of 1/100 s).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// TestKickFDNotAnEventfd sends SET_VRING_KICK with descriptors that are
// not eventfds and are always readable (a pipe whose writer is gone,
// /dev/zero). The back-end must either refuse them or at least not spin
// on them: an idle daemon uses no CPU.
func TestKickFDNotAnEventfd(t *testing.T) {
	cases := []struct {
		name string
		fd   func(t *testing.T) int
	}{
		{"hung-up pipe", func(t *testing.T) int {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			unix.Close(p[1])
			t.Cleanup(func() { unix.Close(p[0]) })
			return p[0]
		}},
		{"dev-zero", func(t *testing.T) int {
			fd, err := unix.Open("/dev/zero", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(fd) })
			return fd
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := start(t, config{})
			err := e.f.Set(vf.SetVringKick, vf.U64(2), []int{c.fd(t)})
			if err != nil && !vf.IsAckError(err) {
				e.closedWith(`(?i)kick`) // refused by closing the connection
				return
			}
			if err == nil {
				// Accepted (queue 2 is not configured, so it does not
				// run yet); configure it so that it does.
				q, err := e.f.NewQueue(2, 64)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range []struct {
					req vf.Request
					p   []byte
				}{
					{vf.SetVringNum, vf.VringState(2, 64)},
					{vf.SetVringAddr, q.Addr().Encode()},
					{vf.SetVringEnable, vf.VringState(2, 1)},
				} {
					if err := e.f.Set(m.req, m.p, nil); err != nil {
						t.Fatal(err)
					}
				}
				// SET_VRING_ADDR on a stopped ring does not start it;
				// the kick does.
				err = e.f.Set(vf.SetVringKick, vf.U64(2), []int{c.fd(t)})
				if err != nil && !vf.IsAckError(err) {
					e.closedWith(`(?i)kick`)
					return
				}
			}
			pid := e.d.Cmd.Process.Pid
			before := cpuTime(t, pid)
			time.Sleep(time.Second) // measuring CPU use over a second
			used := cpuTime(t, pid) - before
			if used > 200*time.Millisecond {
				t.Errorf("with a %s as kick descriptor the idle daemon used %v of CPU in 1s: the ring goroutine spins on it", c.name, used)
			}
			e.serves(e.rq)
			e.finish()
		})
	}
}
