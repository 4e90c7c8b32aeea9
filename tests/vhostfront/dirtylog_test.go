package vhostfront

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDirtyLog: with VHOST_F_LOG_ALL and a log from SET_LOG_BASE, every
// reply the daemon writes into guest memory marks its pages, the used ring
// included; with LOG_ALL cleared again (a cancelled migration) it marks
// nothing and keeps serving.
func TestDirtyLog(t *testing.T) {
	opts := Options{
		Protocol: ProtocolReplyAck | ProtocolMQ | ProtocolConfig | ProtocolResetDevice | ProtocolLogShmfd,
		Features: FeatureVersion1 | FeatureIndirectDesc | FeatureEventIdx | FeatureProtocolFeatures | FeatureLogAll,
	}
	d, f, _ := startAndConnect(t, opts)
	if f.ProtoAcked&ProtocolLogShmfd == 0 || f.Offered&FeatureLogAll == 0 {
		t.Fatalf("the back-end offers protocol %#x, features %#x: no dirty logging", f.ProtoOffered, f.Offered)
	}
	// QEMU acknowledges LOG_ALL only while migrating.
	if err := f.Set(SetFeatures, U64(f.Acked&^FeatureLogAll), nil); err != nil {
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

	// One bit per 4 KiB page of guest memory, as QEMU sizes it.
	pages := f.Mem.End() / 4096
	size := int64((pages/8 + 4095) &^ 4095)
	logFD, err := unix.MemfdCreate("dirty-log", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(logFD)
	if err := unix.Ftruncate(logFD, size); err != nil {
		t.Fatal(err)
	}
	logMem, err := unix.Mmap(logFD, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(logMem)
	payload := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, uint64(size)), 0)
	reply, err := f.Conn.Call(SetLogBase, payload, []int{logFD})
	if err != nil {
		t.Fatalf("SET_LOG_BASE: %v", err)
	}
	if reply.Request != SetLogBase {
		t.Fatalf("SET_LOG_BASE answered with request %d", reply.Request)
	}
	// Migration starts: the used ring's log address, then LOG_ALL.
	a := q.Addr()
	a.Flags, a.LogGuestA = 1, q.UsedAddr
	if err := f.Set(SetVringAddr, a.Encode(), nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Set(SetFeatures, U64(f.Acked|FeatureLogAll), nil); err != nil {
		t.Fatal(err)
	}
	marked := func(addr uint64) bool {
		page := addr / 4096
		return logMem[page/8]&(1<<(page%8)) != 0
	}
	count := func() (n int) {
		for _, b := range logMem {
			for ; b != 0; b &= b - 1 {
				n++
			}
		}
		return n
	}
	if _, err := c.GetAttr(RootID); err != nil {
		t.Fatal(err)
	}
	if !marked(q.UsedAddr) {
		t.Error("the used ring's page is not marked")
	}
	// The reply's buffer is somewhere else in guest memory.
	if n := count(); n < 2 {
		t.Errorf("%d pages marked after a reply, want the used ring's and the reply buffer's", n)
	}

	// Cancelled: LOG_ALL cleared, the source serves on without logging.
	if err := f.Set(SetFeatures, U64(f.Acked&^FeatureLogAll), nil); err != nil {
		t.Fatal(err)
	}
	clear(logMem)
	for range 10 {
		if _, err := c.GetAttr(RootID); err != nil {
			t.Fatalf("after the cancelled migration: %v", err)
		}
	}
	if n := count(); n != 0 {
		t.Errorf("%d pages marked with logging off", n)
	}
	closeAndCheck(t, d, f)
}
