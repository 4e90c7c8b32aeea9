package vhostuser

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
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

// stateTransfer is a save or load running over the front-end's pipe on a
// goroutine of its own, so that the connection keeps reading messages
// while it runs: a front-end that never closes the pipe cannot hang the
// message loop, and its disconnect still ends the daemon.
//
// CHECK_DEVICE_STATE is answered when the transfer ends: at once if it has,
// otherwise by the transfer's goroutine. QEMU sends it after the pipe
// reached EOF (save) or after closing its end (load), and waits for the
// answer before sending anything else. A message that needs the device to
// itself (a queue starting, a reset, the connection ending) cancels a
// transfer still running: its pipe is closed under it, it fails, and a
// CHECK_DEVICE_STATE reports the failure.
type stateTransfer struct {
	direction uint32
	f         *os.File // the pipe; non-blocking, so closing it interrupts the transfer
	done      chan struct{}
	err       error // set before done is closed

	mu       sync.Mutex
	finished bool // protected by mu
	checks   int  // CHECK_DEVICE_STATE messages waiting for the outcome; protected by mu
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
	// Non-blocking, the file goes through the netpoller, where Close
	// interrupts a read or write that waits for the front-end.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("device state descriptor: %w", err)
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
	case b.transfer != nil && !b.transfer.isFinished():
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
	t := &stateTransfer{direction: direction, f: f, done: make(chan struct{})}
	b.transfer = t
	go b.runTransfer(t, sd)
	b.log.Info("device state transfer started", "direction", directionName(direction))
	return b.conn.replyU64(m.req, stateReplyNoFD)
}

// runTransfer saves or loads the state, then answers the
// CHECK_DEVICE_STATE messages that came meanwhile.
func (b *Backend) runTransfer(t *stateTransfer, sd StateDevice) {
	defer close(t.done)
	var err error
	if t.direction == stateSave {
		err = sd.SaveState(t.f)
	} else {
		err = sd.LoadState(t.f)
	}
	// Closing signals EOF: without an error the front-end could not
	// tell a cut state from a whole one, so CHECK_DEVICE_STATE reports
	// the outcome.
	if cerr := t.f.Close(); cerr != nil && err == nil && !errors.Is(cerr, os.ErrClosed) {
		err = cerr
	}
	t.mu.Lock()
	t.err, t.finished = err, true
	checks := t.checks
	t.checks = 0
	t.mu.Unlock()
	for range checks {
		if rerr := b.answerCheck(t); rerr != nil {
			b.log.Debug("answering CHECK_DEVICE_STATE", "err", rerr)
			return
		}
	}
}

func (t *stateTransfer) isFinished() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finished
}

// cancelTransfer ends a transfer still running (see stateTransfer) and
// waits for its goroutine.
func (b *Backend) cancelTransfer(why string) {
	t := b.transfer
	if t == nil || t.isFinished() {
		return
	}
	b.log.Warn("device state transfer cancelled", "direction", directionName(t.direction), "because", why)
	t.f.Close()
	<-t.done
}

func directionName(d uint32) string {
	if d == stateSave {
		return "save"
	}
	return "load"
}

// checkDeviceState reports the transfer's outcome, 0 for success, once it
// has ended (see stateTransfer).
func (b *Backend) checkDeviceState(m *message) error {
	if b.protocol&ProtocolDeviceState == 0 {
		return fmt.Errorf("CHECK_DEVICE_STATE without VHOST_USER_PROTOCOL_F_DEVICE_STATE")
	}
	t := b.transfer
	if t == nil {
		b.log.Error("device state transfer failed", "err", "no device state transfer took place")
		return b.conn.replyU64(m.req, 1)
	}
	t.mu.Lock()
	if !t.finished {
		t.checks++
		t.mu.Unlock()
		return nil
	}
	t.mu.Unlock()
	return b.answerCheck(t)
}

// answerCheck answers a CHECK_DEVICE_STATE for the finished transfer t.
func (b *Backend) answerCheck(t *stateTransfer) error {
	if t.err != nil {
		b.log.Error("device state transfer failed", "err", t.err)
		return b.conn.replyU64(CheckDeviceState, 1)
	}
	b.log.Info("device state transfer succeeded", "direction", directionName(t.direction))
	return b.conn.replyU64(CheckDeviceState, 0)
}
