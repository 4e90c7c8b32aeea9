package vhostuser

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Fuzz targets for each decoder of message payloads: none may panic on any
// payload, and what one accepts must be what the payload says (re-encoded,
// it gives back the payload's bytes).

func FuzzU64(f *testing.F) {
	f.Add([]byte{})
	f.Add(binary.LittleEndian.AppendUint64(nil, 1<<32|1<<30))
	f.Fuzz(func(t *testing.T, p []byte) {
		m := &message{payload: p}
		v, err := m.u64()
		if err != nil {
			if len(p) >= 8 {
				t.Fatalf("refused %d bytes: %v", len(p), err)
			}
			return
		}
		if !bytes.Equal(binary.LittleEndian.AppendUint64(nil, v), p[:8]) {
			t.Fatalf("decoded %#x from %x", v, p)
		}
	})
}

func FuzzVringState(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 1, 0, 0})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, p []byte) {
		m := &message{payload: p}
		index, num, err := m.vringState()
		if err != nil {
			return
		}
		b := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, index), num)
		if !bytes.Equal(b, p[:8]) {
			t.Fatalf("decoded %d, %d from %x", index, num, p)
		}
	})
}

func FuzzVringAddr(f *testing.F) {
	le := binary.LittleEndian
	seed := le.AppendUint32(nil, 1)
	seed = le.AppendUint32(seed, vringFLog)
	for _, a := range []uint64{0x7f0000001000, 0x7f0000003000, 0x7f0000002000, 0x3000} {
		seed = le.AppendUint64(seed, a)
	}
	f.Add(seed)
	f.Add(seed[:39])
	f.Fuzz(func(t *testing.T, p []byte) {
		m := &message{payload: p}
		a, err := m.vringAddr()
		if err != nil {
			if len(p) >= vringAddrSize {
				t.Fatalf("refused %d bytes: %v", len(p), err)
			}
			return
		}
		b := le.AppendUint32(nil, a.index)
		b = le.AppendUint32(b, a.flags)
		for _, v := range []uint64{a.desc, a.used, a.avail, a.logGuestAdr} {
			b = le.AppendUint64(b, v)
		}
		if !bytes.Equal(b, p[:vringAddrSize]) {
			t.Fatalf("decoded %+v from %x", a, p)
		}
	})
}

func appendRegion(b []byte, r region) []byte {
	le := binary.LittleEndian
	for _, v := range []uint64{r.guestAddr, r.size, r.userAddr, r.mmapOffset} {
		b = le.AppendUint64(b, v)
	}
	return b
}

func FuzzMemTable(f *testing.F) {
	le := binary.LittleEndian
	one := appendRegion(le.AppendUint64(nil, 1), region{0, 1 << 20, 0x7f0000000000, 0})
	f.Add(one, uint8(1))
	f.Add(one, uint8(2))
	f.Add(one[:20], uint8(1))
	two := appendRegion(appendRegion(le.AppendUint64(nil, 2), region{0, 4096, 0x1000, 0}), region{1 << 30, 4096, 0x2000, 8192})
	f.Add(two, uint8(2))
	f.Add(le.AppendUint64(nil, 0xffffffff), uint8(8))
	f.Fuzz(func(t *testing.T, p []byte, nfds uint8) {
		m := &message{payload: p, fds: make([]int, nfds%(maxFDs+2))}
		rs, err := m.memTable()
		if err != nil {
			return
		}
		if len(rs) == 0 || len(rs) > maxFDs || len(rs) != len(m.fds) {
			t.Fatalf("%d regions accepted with %d descriptors", len(rs), len(m.fds))
		}
		b := le.AppendUint32(nil, uint32(len(rs)))
		b = append(b, p[4:8]...) // padding
		for _, r := range rs {
			b = appendRegion(b, r)
		}
		if !bytes.Equal(b, p[:len(b)]) {
			t.Fatalf("decoded %+v from %x", rs, p)
		}
	})
}

func FuzzSingleRegion(f *testing.F) {
	f.Add(appendRegion(make([]byte, 8), region{1 << 30, 1 << 16, 0x7f0040000000, 0}))
	f.Add(make([]byte, 39))
	f.Fuzz(func(t *testing.T, p []byte) {
		m := &message{payload: p}
		r, err := m.singleRegion()
		if err != nil {
			return
		}
		if b := appendRegion(nil, r); !bytes.Equal(b, p[8:8+regionSize]) {
			t.Fatalf("decoded %+v from %x", r, p)
		}
	})
}

func FuzzLogBase(f *testing.F) {
	f.Add(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 4096), 0))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, p []byte) {
		m := &message{payload: p}
		size, offset, err := m.logBase()
		if err != nil {
			return
		}
		b := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, size), offset)
		if !bytes.Equal(b, p[:16]) {
			t.Fatalf("decoded %#x, %#x from %x", size, offset, p)
		}
	})
}

func FuzzDeviceStateTransfer(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		m := &message{payload: p}
		direction, phase, err := m.deviceStateTransfer()
		if err != nil {
			if len(p) == 8 {
				t.Fatalf("refused 8 bytes: %v", err)
			}
			return
		}
		b := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, direction), phase)
		if !bytes.Equal(b, p) {
			t.Fatalf("decoded %d, %d from %x", direction, phase, p)
		}
	})
}

func FuzzConfigSpace(f *testing.F) {
	le := binary.LittleEndian
	f.Add(append(le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 0), 8), 0), make([]byte, 8)...))
	f.Add(le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 0xfffffff0), 0xffffffff), 0))
	f.Fuzz(func(t *testing.T, p []byte) {
		m := &message{payload: p}
		offset, size, err := m.configSpace()
		if err != nil {
			return
		}
		if size > 256 || len(p) != 12+int(size) || offset != le.Uint32(p) {
			t.Fatalf("accepted offset %d size %d in %d bytes", offset, size, len(p))
		}
		// What getConfig then does with it: never out of bounds.
		cfg := make([]byte, 44)
		if uint64(offset)+uint64(size) <= uint64(len(cfg)) {
			_ = cfg[offset : offset+size]
		}
	})
}

// FuzzConnRead feeds a byte stream, in chunks, to the message framing:
// every message read is within the limits, and a bad stream is an error,
// never a panic or a hang.
func FuzzConnRead(f *testing.F) {
	msg := func(req Request, flags uint32, payload []byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(req))
		b = binary.LittleEndian.AppendUint32(b, flags)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
		return append(b, payload...)
	}
	f.Add(append(msg(GetFeatures, flagVersion, nil), msg(SetFeatures, flagVersion|flagNeedReply, make([]byte, 8))...), uint8(5))
	f.Add(msg(SetVringAddr, flagVersion, make([]byte, 40))[:30], uint8(0))
	f.Add(binary.LittleEndian.AppendUint32(msg(GetFeatures, flagVersion, nil)[:8], 0xffffffff), uint8(3))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		c, err := newConn(sp[1])
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		go func() {
			defer unix.Close(sp[0])
			step := max(int(chunk), 1)
			for b := stream; len(b) > 0; {
				k := min(step, len(b))
				if _, err := unix.Write(sp[0], b[:k]); err != nil {
					return
				}
				b = b[k:]
			}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for n := 0; ; n++ {
			if time.Now().After(deadline) {
				t.Fatalf("still reading after %d messages", n)
			}
			m, err := c.read()
			if err != nil {
				return
			}
			if len(m.payload) > maxPayload || len(m.fds) != 0 || m.flags&flagVersionMask != flagVersion {
				t.Fatalf("message %d: %d payload bytes, %d fds, flags %#x", n, len(m.payload), len(m.fds), m.flags)
			}
		}
	})
}
