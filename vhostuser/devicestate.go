package vhostuser

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// StateDevice is a Device whose state moves with a live migration
// (VHOST_USER_PROTOCOL_F_DEVICE_STATE): QEMU asks the source back-end to
// save it into a pipe and the destination back-end to load it from one.
type StateDevice interface {
	Device
	// SaveState writes the device's state to w. The front-end has stopped
	// every ring.
	SaveState(w io.Writer) error
	// LoadState reads a state SaveState wrote, until EOF, and applies it;
	// on error the device is as it was before.
	LoadState(r io.Reader) error
}

// Directions of SET_DEVICE_STATE_FD.
const (
	stateSave = 0
	stateLoad = 1
)

// statePhaseStopped is the only migration phase the protocol defines: the
// device is suspended, after memory was transferred.
const statePhaseStopped = 0

// stateReplyNoFD is SET_DEVICE_STATE_FD's invalid-descriptor flag: the
// back-end returns no channel of its own and uses the front-end's.
const stateReplyNoFD = 1 << 8

// stateTransfer is a save or load running over the front-end's pipe, so
// that the connection keeps answering messages; CHECK_DEVICE_STATE waits
// for its outcome.
type stateTransfer struct {
	direction uint32
	done      chan struct{}
	err       error // set before done is closed
}

// setDeviceStateFD starts a transfer and answers with the invalid-FD flag
// (we use the front-end's descriptor) or an error status.
func (b *Backend) setDeviceStateFD(m *message) error {
	sd, ok := b.dev.(StateDevice)
	if !ok || b.protocol&ProtocolDeviceState == 0 {
		return fmt.Errorf("SET_DEVICE_STATE_FD without VHOST_USER_PROTOCOL_F_DEVICE_STATE")
	}
	direction, phase, err := m.deviceStateTransfer()
	if err != nil {
		return err
	}
	fd, err := takeFD(m)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "device state")
	fail := func(format string, args ...any) error {
		f.Close()
		b.log.Error("device state transfer refused", "err", fmt.Sprintf(format, args...))
		return b.conn.replyU64(m.req, 1)
	}
	switch {
	case direction != stateSave && direction != stateLoad:
		return fail("unknown transfer direction %d", direction)
	case phase != statePhaseStopped:
		return fail("unknown migration phase %d", phase)
	case b.transfer != nil && !b.transfer.finished():
		return fail("a transfer is already running")
	}
	for _, v := range b.vrings {
		if v.running() {
			// The front-end stops every ring first: a request served
			// after the state was taken would be lost to the
			// destination.
			return fail("queue %d is still running", v.index)
		}
	}
	t := &stateTransfer{direction: direction, done: make(chan struct{})}
	b.transfer = t
	go func() {
		defer close(t.done)
		defer f.Close()
		if direction == stateSave {
			t.err = sd.SaveState(f)
			// Closing signals EOF: without an error the front-end
			// could not tell a cut state from a whole one, so
			// CHECK_DEVICE_STATE reports the outcome.
		} else {
			t.err = sd.LoadState(f)
		}
	}()
	b.log.Info("device state transfer started", "direction", directionName(direction))
	return b.conn.replyU64(m.req, stateReplyNoFD)
}

func (t *stateTransfer) finished() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func directionName(d uint32) string {
	if d == stateSave {
		return "save"
	}
	return "load"
}

// checkDeviceState waits for the transfer and reports its outcome: 0 for
// success.
func (b *Backend) checkDeviceState(m *message) error {
	if b.protocol&ProtocolDeviceState == 0 {
		return fmt.Errorf("CHECK_DEVICE_STATE without VHOST_USER_PROTOCOL_F_DEVICE_STATE")
	}
	t := b.transfer
	var err error
	if t == nil {
		err = errors.New("no device state transfer took place")
	} else {
		<-t.done
		err = t.err
	}
	if err != nil {
		b.log.Error("device state transfer failed", "err", err)
		return b.conn.replyU64(m.req, 1)
	}
	b.log.Info("device state transfer succeeded", "direction", directionName(t.direction))
	return b.conn.replyU64(m.req, 0)
}
