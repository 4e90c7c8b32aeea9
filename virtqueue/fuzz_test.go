package virtqueue

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzQueue lays the fuzzer's bytes over all three rings and the indirect
// tables, with every queue size up to 32 and both ring features, and serves
// what the queue offers (FuzzPop fuzzes the descriptor table of one
// configuration): Pop never panics, every buffer of an accepted chain lies in guest memory, a chain
// is returned as used unless its head does not exist, and a broken ring
// stops the loop.
func FuzzQueue(f *testing.F) {
	le := binary.LittleEndian
	// Size 8: descriptor 0 (readable, next 1), 1 (writable), then the
	// available ring: flags, idx 1, ring[0] 0.
	seed := make([]byte, 16*8+6+2*8)
	le.PutUint64(seed[0:], bufAt)
	le.PutUint32(seed[8:], 64)
	le.PutUint16(seed[12:], descNext)
	le.PutUint16(seed[14:], 1)
	le.PutUint64(seed[16:], bufAt+0x100)
	le.PutUint32(seed[24:], 128)
	le.PutUint16(seed[28:], descWrite)
	le.PutUint16(seed[16*8+2:], 1)
	f.Add(seed, uint8(3), true, true)
	f.Add(seed[:16*8+4], uint8(0), false, true)
	f.Fuzz(runQueue)
}

func runQueue(t *testing.T, rings []byte, sizeLog uint8, eventIdx, indirect bool) {
	{
		d := newDriver(t, Config{Size: 1 << (sizeLog % 6), EventIdx: eventIdx, Indirect: indirect})
		// The fuzzer's bytes are the descriptor table, the available
		// ring (flags, idx, ring, used_event), the used ring's avail_event
		// and then indirect tables, in that order.
		n := int(d.q.Size())
		for _, part := range []struct {
			addr uint64
			len  int
		}{{descAt, 16 * n}, {availAt, 6 + 2*n}, {usedAt + 4 + 8*uint64(n), 2}, {tableAt, 0x1000}} {
			k := copy(d.bytes(part.addr, uint64(part.len)), rings)
			rings = rings[k:]
		}
		var c Chain
		used := d.q.usedIdx
		for range 4 * int(d.q.Size()) {
			ok, err := d.q.Pop(&c)
			if err != nil {
				if !errors.Is(err, ErrBrokenRing) {
					t.Fatalf("Pop: %v", err)
				}
				return
			}
			if !ok {
				return
			}
			for _, b := range append(c.Readable, c.Writable...) {
				if len(b) > 0 && !inGuest(d, b) {
					t.Fatalf("chain %d has a buffer outside guest memory", c.Head)
				}
			}
			for _, b := range c.Writable {
				clear(b)
			}
			d.q.Push(&c, uint32(c.WritableLen()))
			if c.Head < d.q.Size() {
				used++
			}
			if d.q.usedIdx != used {
				t.Fatalf("used index %d, want %d", d.q.usedIdx, used)
			}
			d.q.ArmNotify()
		}
	}
}

// inGuest reports whether b lies inside d's guest memory.
func inGuest(d *driver, b []byte) bool { return within(d.bytes(memBase, memSize), b) }
