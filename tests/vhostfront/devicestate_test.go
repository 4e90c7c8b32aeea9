package vhostfront

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// stateOpts negotiates the device state protocol feature too.
var stateOpts = Options{Protocol: ProtocolReplyAck | ProtocolMQ | ProtocolConfig | ProtocolResetDevice | ProtocolDeviceState}

// TestDeviceStateHandOver migrates a FUSE session from one back-end to
// another as QEMU does: the source saves its state into a pipe after its
// queue is stopped, the destination loads it, both report success through
// CHECK_DEVICE_STATE, and the destination serves the node and the open
// file the guest had without a new INIT.
func TestDeviceStateHandOver(t *testing.T) {
	d1, f1, shared := startAndConnect(t, stateOpts)
	if f1.ProtoAcked&ProtocolDeviceState == 0 {
		t.Fatal("the back-end does not offer VHOST_USER_PROTOCOL_F_DEVICE_STATE")
	}
	if err := os.WriteFile(filepath.Join(shared, "f"), []byte("hello"), 0o644); err != nil {
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
	e, err := c.Lookup(RootID, "f")
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Open(e.NodeId, uint32(os.O_RDONLY))
	if err != nil {
		t.Fatal(err)
	}

	// Saving while the queue runs is refused: requests after the save
	// would be lost to the destination.
	if reply, end, err := f1.SetDeviceStateFD(StateSave, 0); err != nil || reply&0xff == 0 {
		t.Errorf("save with a running queue: reply %#x, %v; want a refusal", reply, err)
	} else {
		end.Close()
	}
	if _, err := f1.GetVringBase(1); err != nil {
		t.Fatal(err)
	}
	reply, end, err := f1.SetDeviceStateFD(StateSave, 0)
	if err != nil || reply != 1<<8 {
		t.Fatalf("save: reply %#x, %v; want %#x (success, the front-end's pipe)", reply, err, 1<<8)
	}
	state, err := io.ReadAll(end)
	end.Close()
	if err != nil || len(state) == 0 {
		t.Fatalf("reading the state: %d bytes, %v", len(state), err)
	}
	if status, err := f1.Conn.CallU64(CheckDeviceState); err != nil || status != 0 {
		t.Fatalf("CHECK_DEVICE_STATE after save: %d, %v", status, err)
	}

	d2, err := StartDaemon(DaemonOptions{Binary: daemonBin, SocketPath: filepath.Join(t.TempDir(), "2.sock"), SharedDir: shared})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d2.Kill)
	stateOpts2 := stateOpts
	stateOpts2.Memory = f1.Mem
	f2, err := Connect(d2, stateOpts2, timeout)
	if err != nil {
		t.Fatal(err)
	}
	reply, end, err = f2.SetDeviceStateFD(StateLoad, 0)
	if err != nil || reply != 1<<8 {
		t.Fatalf("load: reply %#x, %v", reply, err)
	}
	if _, err := end.Write(state); err != nil {
		t.Fatal(err)
	}
	end.Close()
	if status, err := f2.Conn.CallU64(CheckDeviceState); err != nil || status != 0 {
		t.Fatalf("CHECK_DEVICE_STATE after load: %d, %v\n%s", status, err, d2.Output())
	}
	if err := f2.ConfigureQueue(q); err != nil {
		t.Fatal(err)
	}
	// No INIT: the session came with the state.
	if _, err := c.GetAttr(e.NodeId); err != nil {
		t.Errorf("GETATTR of the migrated node: %v", err)
	}
	if got, err := c.Read(e.NodeId, o.Fh, 0, 100); err != nil || string(got) != "hello" {
		t.Errorf("READ through the migrated handle: %q, %v", got, err)
	}
	closeAndCheck(t, d2, f2)
	closeAndCheck(t, d1, f1)
}

// TestDeviceStateRefusals: bad transfer parameters, a CHECK without a
// transfer and a state that is not one get an error status, and the
// connection stays usable.
func TestDeviceStateRefusals(t *testing.T) {
	d, f, _ := startAndConnect(t, stateOpts)
	for _, tt := range []struct {
		name             string
		direction, phase uint32
	}{
		{"unknown direction", 7, 0},
		{"unknown phase", StateSave, 1},
	} {
		reply, end, err := f.SetDeviceStateFD(tt.direction, tt.phase)
		if err != nil || reply&0xff == 0 {
			t.Errorf("%s: reply %#x, %v; want an error status", tt.name, reply, err)
			continue
		}
		end.Close()
	}
	if status, err := f.Conn.CallU64(CheckDeviceState); err != nil || status == 0 {
		t.Errorf("CHECK_DEVICE_STATE without a transfer: %d, %v; want an error status", status, err)
	}
	reply, end, err := f.SetDeviceStateFD(StateLoad, 0)
	if err != nil || reply != 1<<8 {
		t.Fatalf("load: reply %#x, %v", reply, err)
	}
	end.Write([]byte("FERRYFS\x00\x00\x01not msgpack at all"))
	end.Close()
	if status, err := f.Conn.CallU64(CheckDeviceState); err != nil || status == 0 {
		t.Errorf("CHECK_DEVICE_STATE after loading garbage: %d, %v; want an error status", status, err)
	}
	// Still serving.
	q, err := f.StartQueue(1, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewFUSE(q).Init(); err != nil {
		t.Errorf("INIT after the refusals: %v", err)
	}
	closeAndCheck(t, d, f)
}

// TestDeviceStateCheckWhilePipeOpen: a CHECK_DEVICE_STATE sent while the
// front-end still holds the pipe open is answered once the transfer ends;
// meanwhile the back-end keeps answering messages (it used to wait for the
// transfer, for ever if the pipe was never closed).
func TestDeviceStateCheckWhilePipeOpen(t *testing.T) {
	d, f, _ := startAndConnect(t, stateOpts)
	reply, end, err := f.SetDeviceStateFD(StateLoad, 0)
	if err != nil || reply != 1<<8 {
		t.Fatalf("load: reply %#x, %v", reply, err)
	}
	defer end.Close()
	if err := f.Conn.Send(CheckDeviceState, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	f.Conn.Timeout = 3 * time.Second
	if _, err := f.Conn.CallU64(GetFeatures); err != nil {
		t.Fatalf("GET_FEATURES while a CHECK_DEVICE_STATE waits for the transfer: %v", err)
	}
	end.Close() // an empty state: the load fails
	m, err := f.Conn.Recv()
	if err != nil {
		t.Fatalf("CHECK_DEVICE_STATE after the pipe was closed: %v", err)
	}
	if status, err := m.U64(); err != nil || m.Request != CheckDeviceState || status == 0 {
		t.Fatalf("CHECK_DEVICE_STATE reply: request %d status %d, %v; want a failure", m.Request, status, err)
	}
	closeAndCheck(t, d, f)
}

// TestDeviceStateDisconnectDuringTransfer: a front-end that goes away while
// it keeps the pipe of a transfer open does not keep the daemon waiting
// for the transfer.
func TestDeviceStateDisconnectDuringTransfer(t *testing.T) {
	for _, direction := range []uint32{StateSave, StateLoad} {
		d, f, _ := startAndConnect(t, stateOpts)
		reply, end, err := f.SetDeviceStateFD(direction, 0)
		if err != nil || reply != 1<<8 {
			t.Fatalf("direction %d: reply %#x, %v", direction, reply, err)
		}
		if direction == StateLoad {
			end.Write([]byte("FERRYFS")) // a state begun, never finished
		}
		// The save writes into the pipe until it is full (a large
		// state); the front-end reads nothing.
		closeAndCheck(t, d, f)
		end.Close()
	}
}

// TestDeviceStateCancelled: a queue started or the device reset while a
// transfer still runs cancels the transfer (a request served meanwhile
// would change a state being saved, or be undone by one being loaded);
// CHECK_DEVICE_STATE reports the failure at once and the daemon serves on.
func TestDeviceStateCancelled(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(f *Frontend) error
	}{
		{"SET_VRING_KICK", func(f *Frontend) error { _, err := f.StartQueue(1, 64); return err }},
		{"RESET_DEVICE", func(f *Frontend) error { return f.Set(ResetDevice, nil, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, f, _ := startAndConnect(t, stateOpts)
			reply, end, err := f.SetDeviceStateFD(StateLoad, 0)
			if err != nil || reply != 1<<8 {
				t.Fatalf("load: reply %#x, %v", reply, err)
			}
			defer end.Close()
			f.Conn.Timeout = 3 * time.Second
			if err := tc.do(f); err != nil {
				t.Fatal(err)
			}
			if status, err := f.Conn.CallU64(CheckDeviceState); err != nil || status == 0 {
				t.Fatalf("CHECK_DEVICE_STATE after %s during the load: %d, %v; want a failure", tc.name, status, err)
			}
			q := f.Queues[1]
			if q == nil {
				if q, err = f.StartQueue(1, 64); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := NewFUSE(q).Init(); err != nil {
				t.Fatalf("INIT after the cancelled load: %v", err)
			}
			closeAndCheck(t, d, f)
		})
	}
}
