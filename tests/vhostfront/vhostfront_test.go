package vhostfront

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

var daemonBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "vhostfront-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	daemonBin = filepath.Join(tmp, "ferryfs")
	if err := BuildDaemon(daemonBin); err != nil {
		fmt.Fprintf(os.Stderr, "building ferryfs: %v\n", err)
		return 1
	}
	return m.Run()
}

const timeout = 15 * time.Second

// startAndConnect runs a daemon (with more command-line arguments args) on
// a fresh shared directory and sets up a front-end on it.
func startAndConnect(t *testing.T, opts Options, args ...string) (*Daemon, *Frontend, string) {
	t.Helper()
	shared := t.TempDir()
	d, err := StartDaemon(DaemonOptions{
		Binary: daemonBin, SocketPath: filepath.Join(t.TempDir(), "vhost.sock"), SharedDir: shared, Args: args,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Kill)
	f, err := Connect(d, opts, timeout)
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, d.Output())
	}
	t.Cleanup(func() { f.Close() })
	return d, f, shared
}

// closeAndCheck disconnects and checks the daemon exits 0 without a crash.
func closeAndCheck(t *testing.T, d *Daemon, f *Frontend) {
	t.Helper()
	f.Close()
	code, err := d.Wait(timeout)
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, d.Output())
	}
	if code != 0 {
		t.Errorf("daemon exit status %d, want 0; output:\n%s", code, d.Output())
	}
	if err := d.CheckNoCrash(); err != nil {
		t.Error(err)
	}
}

func TestNegotiation(t *testing.T) {
	d, f, _ := startAndConnect(t, Options{})
	for _, bit := range []uint64{FeatureVersion1, FeatureIndirectDesc, FeatureEventIdx, FeatureProtocolFeatures} {
		if f.Acked&bit == 0 {
			t.Errorf("feature %#x not negotiated (offered %#x)", bit, f.Offered)
		}
	}
	if !f.ReplyAck() {
		t.Errorf("REPLY_ACK not negotiated (offered %#x)", f.ProtoOffered)
	}
	if f.QueueNum < 2 {
		t.Errorf("GET_QUEUE_NUM = %d, want at least 2", f.QueueNum)
	}
	if n, err := f.Conn.CallU64(GetMaxMemSlots); err != nil || n == 0 {
		t.Errorf("GET_MAX_MEM_SLOTS = %d, %v", n, err)
	}
	closeAndCheck(t, d, f)
}

// TestFUSERoundTrip does what a guest does after mounting: INIT, then
// LOOKUP, GETATTR, CREATE, WRITE, READ, with every chain shape.
func TestFUSERoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		chain ChainOptions
	}{
		{"direct", Options{}, ChainOptions{}},
		{"indirect", Options{}, ChainOptions{Indirect: true}},
		{"split", Options{}, ChainOptions{Split: 100}},
		{"split-indirect", Options{}, ChainOptions{Split: 64, Indirect: true}},
		{"no-event-idx", Options{NoEventIdx: true}, ChainOptions{}},
		{"no-reply-ack", Options{Protocol: ProtocolMQ}, ChainOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, f, shared := startAndConnect(t, tc.opts)
			if err := os.WriteFile(filepath.Join(shared, "hello"), []byte("hello, guest"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := f.StartQueue(0, 128); err != nil { // hiprio
				t.Fatalf("%v\noutput:\n%s", err, d.Output())
			}
			q, err := f.StartQueue(1, 256)
			if err != nil {
				t.Fatalf("%v\noutput:\n%s", err, d.Output())
			}
			c := NewFUSE(q)
			c.Chain = tc.chain
			init, err := c.Init()
			if err != nil {
				t.Fatalf("INIT: %v\noutput:\n%s", err, d.Output())
			}
			if init.Major != 7 || init.Minor != 38 || init.MaxWrite == 0 {
				t.Fatalf("INIT reply %+v", init)
			}

			e, err := c.Lookup(RootID, "hello")
			if err != nil {
				t.Fatalf("LOOKUP: %v", err)
			}
			if e.NodeId == 0 || e.NodeId == RootID || e.Size != 12 || e.Mode&syscall.S_IFMT != syscall.S_IFREG {
				t.Fatalf("LOOKUP hello: %+v", e)
			}
			if _, err := c.Lookup(RootID, "missing"); !errors.Is(err, syscall.ENOENT) {
				t.Fatalf("LOOKUP missing: %v, want ENOENT", err)
			}
			a, err := c.GetAttr(RootID)
			if err != nil || a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
				t.Fatalf("GETATTR root: %+v, %v", a, err)
			}

			cr, err := c.Create(RootID, "new", uint32(os.O_RDWR|os.O_CREATE|os.O_EXCL), 0o600)
			if err != nil {
				t.Fatalf("CREATE: %v\noutput:\n%s", err, d.Output())
			}
			data := bytes.Repeat([]byte("0123456789abcdef"), 1000)
			if n, err := c.Write(cr.NodeId, cr.Fh, 10, data); err != nil || n != uint32(len(data)) {
				t.Fatalf("WRITE = %d, %v\noutput:\n%s", n, err, d.Output())
			}
			got, err := c.Read(cr.NodeId, cr.Fh, 10, uint32(len(data)))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("READ = %d bytes, %v", len(got), err)
			}
			if err := c.Release(cr.NodeId, cr.Fh); err != nil {
				t.Fatalf("RELEASE: %v", err)
			}
			host, err := os.ReadFile(filepath.Join(shared, "new"))
			if err != nil || !bytes.Equal(host[10:], data) {
				t.Fatalf("host side of the file: %d bytes, %v", len(host), err)
			}
			if err := c.Forget(cr.NodeId, 1); err != nil {
				t.Fatalf("FORGET: %v", err)
			}
			closeAndCheck(t, d, f)
		})
	}
}

// TestArgBytes checks the argument encoding against the kernel's sizes.
func TestArgBytes(t *testing.T) {
	for _, c := range []struct {
		v    any
		want int
	}{
		{&fuse.GetAttrIn{}, 16}, {&fuse.SetAttrIn{}, 88}, {&fuse.InitIn{}, 64}, {&fuse.CreateIn{}, 16},
		{&fuse.ReadIn{}, 40}, {&fuse.WriteIn{}, 40}, {&fuse.MknodIn{}, 16}, {&fuse.RenameIn{}, 16},
		{&fuse.InHeader{}, 40},
	} {
		if n := len(ArgBytes(c.v)); n != c.want {
			t.Errorf("ArgBytes(%T) is %d bytes, want %d", c.v, n, c.want)
		}
	}
}

// TestHandOver moves a request queue from one back-end to another over the
// same guest memory, as a migration does: GET_VRING_BASE on the first, the
// queue configured from where it stopped on the second, requests go on.
func TestHandOver(t *testing.T) {
	d1, f1, shared := startAndConnect(t, Options{})
	if err := os.WriteFile(filepath.Join(shared, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	q, err := f1.StartQueue(1, 64)
	if err != nil {
		t.Fatal(err)
	}
	c := NewFUSE(q)
	if _, err := c.Init(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ { // wrap the 64-entry rings
		if _, err := c.GetAttr(RootID); err != nil {
			t.Fatal(err)
		}
	}
	base, err := f1.GetVringBase(1)
	if err != nil || base != uint32(q.AvailIdx()) {
		t.Fatalf("GET_VRING_BASE = %d, %v; want %d", base, err, q.AvailIdx())
	}

	d2, err := StartDaemon(DaemonOptions{Binary: daemonBin, SocketPath: filepath.Join(t.TempDir(), "2.sock"), SharedDir: shared})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d2.Kill)
	f2, err := Connect(d2, Options{Memory: f1.Mem}, timeout)
	if err != nil {
		t.Fatal(err)
	}
	if err := f2.ConfigureQueue(q); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Init(); err != nil { // the new back-end has no session yet
		t.Fatal(err)
	}
	if _, err := c.Lookup(RootID, "f"); err != nil {
		t.Fatalf("LOOKUP on the second back-end: %v", err)
	}
	closeAndCheck(t, d2, f2)
	closeAndCheck(t, d1, f1)
}

// TestRequestsAfterIdle sends requests after pauses of every length the
// kick poller treats differently: none (it is still waiting raw), a little
// and a lot longer than its raw wait (it waits in the netpoller then), on
// both queues. A kick lost on the way between the two waits would leave a
// request unanswered, which the queue's timeout reports.
func TestRequestsAfterIdle(t *testing.T) {
	d, f, shared := startAndConnect(t, Options{})
	if err := os.WriteFile(filepath.Join(shared, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	hiprio, err := f.StartQueue(0, 128)
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, d.Output())
	}
	q, err := f.StartQueue(1, 256)
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, d.Output())
	}
	q.Timeout, hiprio.Timeout = 5*time.Second, 5*time.Second
	c, hc := NewFUSE(q), NewFUSE(hiprio)
	if _, err := c.Init(); err != nil {
		t.Fatalf("INIT: %v\noutput:\n%s", err, d.Output())
	}
	pauses := []time.Duration{0, 0, time.Millisecond, 15 * time.Millisecond, 25 * time.Millisecond, 0, 60 * time.Millisecond, 2 * time.Millisecond, 45 * time.Millisecond, 0}
	for round := range 3 {
		for i, pause := range pauses {
			time.Sleep(pause)
			e, err := c.Lookup(RootID, "f")
			if err != nil {
				t.Fatalf("round %d, request %d after %v idle: LOOKUP: %v\noutput:\n%s", round, i, pause, err, d.Output())
			}
			time.Sleep(pause / 2)
			// FORGET goes on the hiprio queue, as the kernel sends it.
			if err := hc.Forget(e.NodeId, 1); err != nil {
				t.Fatalf("round %d, request %d after %v idle: FORGET: %v\noutput:\n%s", round, i, pause, err, d.Output())
			}
		}
	}
	closeAndCheck(t, d, f)
}
