package virtqueue

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/guestmem"
)

// The tests play the driver: they lay rings out in a memfd-backed guest
// memory and check what the device side makes of them.

const (
	memBase = 0x100000
	memSize = 1 << 20
	qsize   = 8
	descAt  = memBase
	availAt = memBase + 0x1000
	usedAt  = memBase + 0x2000
	bufAt   = memBase + 0x10000
	tableAt = memBase + 0x8000 // indirect tables
)

type driver struct {
	t   testing.TB
	mem *guestmem.Memory
	q   *Queue
	idx uint16
}

func newDriver(t testing.TB, cfg Config) *driver {
	t.Helper()
	fd, err := unix.MemfdCreate("guest", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, memSize); err != nil {
		t.Fatal(err)
	}
	mem, err := guestmem.Map([]guestmem.RegionSpec{{GuestAddr: memBase, Size: memSize, UserAddr: 0x7f0000000000, FD: fd}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mem.Unmap)
	if cfg.Size == 0 {
		cfg.Size = qsize
	}
	cfg.DescAddr, cfg.AvailAddr, cfg.UsedAddr = descAt, availAt, usedAt
	q, err := New(cfg, mem)
	if err != nil {
		t.Fatal(err)
	}
	return &driver{t: t, mem: mem, q: q}
}

func (d *driver) bytes(addr, n uint64) []byte {
	b, err := d.mem.Slice(addr, n)
	if err != nil {
		d.t.Fatalf("driver: %v", err)
	}
	return b
}

// setDesc writes descriptor i of the table at tableAddr.
func (d *driver) setDesc(tableAddr uint64, i int, addr uint64, n uint32, flags, next uint16) {
	b := d.bytes(tableAddr+16*uint64(i), 16)
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// offer makes head available.
func (d *driver) offer(head uint16) {
	binary.LittleEndian.PutUint16(d.bytes(availAt+4+2*uint64(d.idx%d.q.cfg.Size), 2), head)
	d.idx++
	binary.LittleEndian.PutUint16(d.bytes(availAt+2, 2), d.idx)
}

func (d *driver) used(i uint16) (id, n uint32, idx uint16) {
	e := d.bytes(usedAt+4+8*uint64(i%d.q.cfg.Size), 8)
	return binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:]), binary.LittleEndian.Uint16(d.bytes(usedAt+2, 2))
}

func (d *driver) pop() *Chain {
	d.t.Helper()
	var c Chain
	ok, err := d.q.Pop(&c)
	if err != nil || !ok {
		d.t.Fatalf("Pop = %v, %v", ok, err)
	}
	return &c
}

func TestChainAndUsed(t *testing.T) {
	d := newDriver(t, Config{})
	copy(d.bytes(bufAt, 5), "hello")
	d.setDesc(descAt, 0, bufAt, 5, descNext, 3)
	d.setDesc(descAt, 3, bufAt+100, 10, descWrite|descNext, 5)
	d.setDesc(descAt, 5, bufAt+200, 20, descWrite, 0)
	d.offer(0)
	c := d.pop()
	if c.Err != nil {
		t.Fatal(c.Err)
	}
	if len(c.Readable) != 1 || string(c.Readable[0]) != "hello" {
		t.Fatalf("readable %q", c.Readable)
	}
	if len(c.Writable) != 2 || len(c.Writable[0]) != 10 || len(c.Writable[1]) != 20 || c.WritableLen() != 30 {
		t.Fatalf("writable lengths wrong: %d buffers", len(c.Writable))
	}
	copy(c.Writable[0], "0123456789")
	if ok, _ := d.q.Pop(new(Chain)); ok {
		t.Fatal("popped a chain that was not offered")
	}
	d.q.Push(c, 1000) // more than the buffers hold: clamped
	id, n, idx := d.used(0)
	if id != 0 || n != 30 || idx != 1 {
		t.Fatalf("used elem {%d %d} idx %d", id, n, idx)
	}
	if string(d.bytes(bufAt+100, 10)) != "0123456789" {
		t.Fatal("reply not in guest memory")
	}
}

func TestIndirect(t *testing.T) {
	d := newDriver(t, Config{Indirect: true})
	d.setDesc(tableAt, 0, bufAt, 8, descNext, 1)
	d.setDesc(tableAt, 1, bufAt+64, 16, descWrite, 0)
	d.setDesc(descAt, 2, tableAt, 32, descIndirect, 0)
	d.offer(2)
	c := d.pop()
	if c.Err != nil || c.Head != 2 || len(c.Readable) != 1 || len(c.Writable) != 1 {
		t.Fatalf("indirect chain: %+v", c)
	}
}

// Every malformed chain is refused without a panic and without a slice
// outside guest memory; the queue goes on with the next chain.
func TestBadChains(t *testing.T) {
	cases := []struct {
		name     string
		indirect bool
		setup    func(d *driver)
	}{
		{"loop", false, func(d *driver) {
			d.setDesc(descAt, 0, bufAt, 8, descNext, 1)
			d.setDesc(descAt, 1, bufAt, 8, descNext, 0)
		}},
		{"self loop", false, func(d *driver) { d.setDesc(descAt, 0, bufAt, 8, descNext, 0) }},
		{"next out of range", false, func(d *driver) { d.setDesc(descAt, 0, bufAt, 8, descNext, qsize) }},
		{"buffer outside memory", false, func(d *driver) { d.setDesc(descAt, 0, memBase+memSize-4, 8, 0, 0) }},
		{"buffer below memory", false, func(d *driver) { d.setDesc(descAt, 0, 0x1000, 8, 0, 0) }},
		{"address wraps", false, func(d *driver) { d.setDesc(descAt, 0, ^uint64(0)-2, 8, 0, 0) }},
		{"huge length", false, func(d *driver) { d.setDesc(descAt, 0, bufAt, 0xffffffff, descWrite, 0) }},
		{"readable after writable", false, func(d *driver) {
			d.setDesc(descAt, 0, bufAt, 8, descWrite|descNext, 1)
			d.setDesc(descAt, 1, bufAt, 8, 0, 0)
		}},
		{"indirect not negotiated", false, func(d *driver) { d.setDesc(descAt, 0, tableAt, 16, descIndirect, 0) }},
		{"indirect in indirect", true, func(d *driver) {
			d.setDesc(tableAt, 0, tableAt, 16, descIndirect, 0)
			d.setDesc(descAt, 0, tableAt, 16, descIndirect, 0)
		}},
		{"indirect with next", true, func(d *driver) { d.setDesc(descAt, 0, tableAt, 16, descIndirect|descNext, 1) }},
		{"indirect odd length", true, func(d *driver) { d.setDesc(descAt, 0, tableAt, 17, descIndirect, 0) }},
		{"indirect empty", true, func(d *driver) { d.setDesc(descAt, 0, tableAt, 0, descIndirect, 0) }},
		{"indirect table outside memory", true, func(d *driver) { d.setDesc(descAt, 0, memBase+memSize-16, 32, descIndirect, 0) }},
		{"indirect loop", true, func(d *driver) {
			d.setDesc(tableAt, 0, bufAt, 8, descNext, 1)
			d.setDesc(tableAt, 1, bufAt, 8, descNext, 0)
			d.setDesc(descAt, 0, tableAt, 32, descIndirect, 0)
		}},
		{"indirect next beyond table", true, func(d *driver) {
			d.setDesc(tableAt, 0, bufAt, 8, descNext, 5)
			d.setDesc(descAt, 0, tableAt, 16, descIndirect, 0)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDriver(t, Config{Indirect: c.indirect})
			c.setup(d)
			d.offer(0)
			ch := d.pop()
			if ch.Err == nil {
				t.Fatalf("chain accepted: %d readable, %d writable", len(ch.Readable), len(ch.Writable))
			}
			if notify := d.q.Push(ch, 0); !notify {
				t.Error("no interrupt for the refused chain")
			}
			if id, n, idx := d.used(0); id != 0 || n != 0 || idx != 1 {
				t.Fatalf("refused chain returned as {%d %d} idx %d", id, n, idx)
			}
			// The queue still works.
			d.setDesc(descAt, 1, bufAt, 4, 0, 0)
			d.offer(1)
			if ch := d.pop(); ch.Err != nil || ch.Head != 1 {
				t.Fatalf("next chain: head %d err %v", ch.Head, ch.Err)
			}
		})
	}
}

func TestBrokenRing(t *testing.T) {
	d := newDriver(t, Config{})
	binary.LittleEndian.PutUint16(d.bytes(availAt+2, 2), qsize+1) // more pending than the ring holds
	if _, err := d.q.Pop(new(Chain)); !errors.Is(err, ErrBrokenRing) {
		t.Fatalf("avail index too far ahead: %v", err)
	}
	d = newDriver(t, Config{})
	d.offer(qsize - 1) // one behind the index: the ring went backwards
	binary.LittleEndian.PutUint16(d.bytes(availAt+2, 2), 0)
	d.q.lastAvail = 1
	if _, err := d.q.Pop(new(Chain)); !errors.Is(err, ErrBrokenRing) {
		t.Fatalf("avail index moved backwards: %v", err)
	}
}

// TestInvalidHeadSkipped: an available entry naming a descriptor that does
// not exist is skipped, never returned as used, and the next entry is
// served.
func TestInvalidHeadSkipped(t *testing.T) {
	d := newDriver(t, Config{})
	d.setDesc(descAt, 2, bufAt, 4, descWrite, 0)
	d.offer(qsize)
	d.offer(0xffff)
	d.offer(2)
	for _, head := range []uint16{qsize, 0xffff} {
		c := d.pop()
		if !errors.Is(c.Err, ErrInvalidHead) {
			t.Fatalf("head %d: Err %v, want ErrInvalidHead", head, c.Err)
		}
		if d.q.Push(c, 0) {
			t.Errorf("head %d: Push asks for an interrupt", head)
		}
		if _, _, idx := d.used(0); idx != 0 {
			t.Fatalf("head %d returned as used (used idx %d)", head, idx)
		}
	}
	c := d.pop()
	if c.Err != nil || c.Head != 2 {
		t.Fatalf("the entry after them: head %d, %v", c.Head, c.Err)
	}
	d.q.Push(c, 4)
	if id, n, idx := d.used(0); id != 2 || n != 4 || idx != 1 {
		t.Fatalf("used entry %d len %d, used idx %d", id, n, idx)
	}
}

func TestBadConfig(t *testing.T) {
	d := newDriver(t, Config{})
	for _, cfg := range []Config{
		{Size: 0, DescAddr: descAt, AvailAddr: availAt, UsedAddr: usedAt},
		{Size: 6, DescAddr: descAt, AvailAddr: availAt, UsedAddr: usedAt},
		{Size: 8, DescAddr: descAt + 8, AvailAddr: availAt, UsedAddr: usedAt},
		{Size: 8, DescAddr: descAt, AvailAddr: availAt, UsedAddr: usedAt + 2},
		{Size: 8, DescAddr: 0, AvailAddr: availAt, UsedAddr: usedAt},
		{Size: 32768, DescAddr: memBase + memSize - 4096, AvailAddr: availAt, UsedAddr: usedAt},
	} {
		if _, err := New(cfg, d.mem); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestEventIdx(t *testing.T) {
	d := newDriver(t, Config{EventIdx: true})
	usedEvent := d.bytes(availAt+4+2*qsize, 2)
	for i := 0; i < 3; i++ {
		d.setDesc(descAt, i, bufAt, 4, descWrite, 0)
		d.offer(uint16(i))
	}
	binary.LittleEndian.PutUint16(usedEvent, 1) // interrupt once used idx passes 1
	var notes []bool
	for i := 0; i < 3; i++ {
		notes = append(notes, d.q.Push(d.pop(), 1))
	}
	if notes[0] || !notes[1] || notes[2] {
		t.Fatalf("notifications %v, want [false true false]", notes)
	}
	if more := d.q.ArmNotify(); more {
		t.Fatal("ArmNotify saw chains that were not there")
	}
	if ev := binary.LittleEndian.Uint16(d.bytes(usedAt+4+8*qsize, 2)); ev != 3 {
		t.Fatalf("avail_event = %d, want 3", ev)
	}
	// Without EVENT_IDX the driver's NO_INTERRUPT flag decides.
	d = newDriver(t, Config{})
	binary.LittleEndian.PutUint16(d.bytes(availAt, 2), availNoInterrupt)
	d.setDesc(descAt, 0, bufAt, 4, descWrite, 0)
	d.offer(0)
	if d.q.Push(d.pop(), 0) {
		t.Fatal("interrupt despite VRING_AVAIL_F_NO_INTERRUPT")
	}
}

func TestDirtyLogOfUsedAndBuffers(t *testing.T) {
	d := newDriver(t, Config{})
	fd, err := unix.MemfdCreate("log", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	logSize := uint64((memBase + memSize) / guestmem.LogPageSize / 8)
	if err := unix.Ftruncate(fd, int64(logSize)); err != nil {
		t.Fatal(err)
	}
	dup, _ := unix.Dup(fd)
	log, err := guestmem.MapDirtyLog(dup, logSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Unmap()
	view, err := unix.Mmap(fd, 0, int(logSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(view)
	d.q.SetLog(&UsedLog{Log: log, UsedAddr: usedAt, LogBuffer: true})
	d.setDesc(descAt, 0, bufAt+3*guestmem.LogPageSize, 2*guestmem.LogPageSize, descWrite, 0)
	d.offer(0)
	d.q.Push(d.pop(), guestmem.LogPageSize+1) // touches two pages
	dirty := func(addr uint64) bool { p := addr / guestmem.LogPageSize; return view[p/8]&(1<<(p%8)) != 0 }
	for _, c := range []struct {
		addr uint64
		want bool
	}{
		{bufAt + 3*guestmem.LogPageSize, true},
		{bufAt + 4*guestmem.LogPageSize, true},
		{bufAt + 5*guestmem.LogPageSize, false},
		{usedAt, true},
		{descAt, false},
	} {
		if dirty(c.addr) != c.want {
			t.Errorf("page of %#x dirty = %v, want %v", c.addr, !c.want, c.want)
		}
	}
}

// FuzzPop feeds arbitrary descriptor tables and available rings to Pop.
// Whatever comes out must lie inside guest memory, and nothing may panic.
func FuzzPop(f *testing.F) {
	f.Add([]byte{0, 0, 0x10, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1, 0, 1, 0}, uint16(1), true)
	f.Add(make([]byte, 16*qsize), uint16(3), false)
	f.Fuzz(func(t *testing.T, table []byte, availIdx uint16, indirect bool) {
		d := newDriver(t, Config{Indirect: indirect, EventIdx: true})
		copy(d.bytes(descAt, 16*qsize), table)
		if len(table) > 16*qsize {
			// The rest becomes the available ring and an indirect table.
			copy(d.bytes(availAt+4, 2*qsize), table[16*qsize:])
			copy(d.bytes(tableAt, 256), table[min(len(table), 16*qsize+2*qsize):])
		}
		binary.LittleEndian.PutUint16(d.bytes(availAt+2, 2), availIdx)
		lo, _ := d.mem.Slice(memBase, memSize)
		for k := 0; k < qsize+1; k++ {
			var c Chain
			ok, err := d.q.Pop(&c)
			if err != nil || !ok {
				return
			}
			for _, bufs := range [][][]byte{c.Readable, c.Writable} {
				for _, b := range bufs {
					if len(b) > 0 && !within(lo, b) {
						t.Fatalf("buffer outside guest memory")
					}
				}
			}
			d.q.Push(&c, uint32(c.WritableLen()))
		}
	})
}

func within(mem, b []byte) bool {
	base := &mem[0]
	end := uintptrOf(&mem[len(mem)-1])
	return uintptrOf(&b[0]) >= uintptrOf(base) && uintptrOf(&b[len(b)-1]) <= end
}

// TestMisalignedInHostMemory: rings at aligned guest addresses in a region
// mapped at an odd offset of its file are misaligned in host memory, where
// the atomics on their indices run, and are refused.
func TestMisalignedInHostMemory(t *testing.T) {
	for _, offset := range []uint64{1, 2, 8} {
		fd, err := unix.MemfdCreate("guest", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Ftruncate(fd, memSize+int64(offset)); err != nil {
			t.Fatal(err)
		}
		mem, err := guestmem.Map([]guestmem.RegionSpec{{GuestAddr: memBase, Size: memSize, UserAddr: 0x7f0000000000, MmapOffset: offset, FD: fd}})
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Unmap()
		if _, err := New(Config{Size: qsize, DescAddr: descAt, AvailAddr: availAt, UsedAddr: usedAt}, mem); err == nil {
			t.Errorf("rings accepted in a region at file offset %d", offset)
		}
	}
}
