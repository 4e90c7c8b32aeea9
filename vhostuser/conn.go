package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// conn reads and writes vhost-user messages on a connected unix socket,
// with the file descriptors they carry.
//
// It goes through Go's netpoller (a net.UnixConn) rather than blocking
// recvmsg calls: a goroutine blocked in a system call holds a P, and with
// the rings' goroutines holding theirs (see vring.run) the runtime would
// keep taking Ps back and handing them to new threads.
type conn struct {
	f       *os.File // owns the socket descriptor Serve was given
	uc      *net.UnixConn
	hdr     [headerSize]byte
	payload [maxPayload]byte
	oob     []byte
}

// newConn takes over the connected socket fd: conn closes it (on error
// too).
func newConn(fd int) (*conn, error) {
	f := os.NewFile(uintptr(fd), "vhost-user")
	fc, err := net.FileConn(f) // works on a duplicate of fd
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	uc, ok := fc.(*net.UnixConn)
	if !ok {
		fc.Close()
		f.Close()
		return nil, fmt.Errorf("vhost-user socket is a %T, not a unix socket", fc)
	}
	return &conn{f: f, uc: uc, oob: make([]byte, unix.CmsgSpace(4*maxFDs))}, nil
}

// close closes both descriptors of the socket.
func (c *conn) close() {
	c.uc.Close()
	c.f.Close()
}

// errClosed is returned when the front-end closed the connection between
// messages.
var errClosed = errors.New("front-end closed the connection")

// read returns the next message. Descriptors it carries belong to the
// caller, which must close those it does not keep. On error, none are left
// open.
func (c *conn) read() (*message, error) {
	n, fds, err := c.recv(c.hdr[:])
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errClosed
	}
	fail := func(err error) (*message, error) {
		closeFDs(fds)
		return nil, err
	}
	if n < headerSize {
		_, more, err := c.recvFull(c.hdr[n:])
		fds = append(fds, more...) // before the error check: fail closes them
		if err != nil {
			return fail(fmt.Errorf("read message header: %w", err))
		}
	}
	m := &message{
		req:   Request(binary.LittleEndian.Uint32(c.hdr[0:])),
		flags: binary.LittleEndian.Uint32(c.hdr[4:]),
	}
	size := binary.LittleEndian.Uint32(c.hdr[8:])
	if m.flags&flagVersionMask != flagVersion {
		return fail(fmt.Errorf("%v: protocol version %d, want 1", m.req, m.flags&flagVersionMask))
	}
	if size > maxPayload {
		return fail(fmt.Errorf("%v: payload of %d bytes, more than %d", m.req, size, maxPayload))
	}
	m.payload = c.payload[:size]
	if size > 0 {
		_, more, err := c.recvFull(m.payload)
		fds = append(fds, more...)
		if err != nil {
			return fail(fmt.Errorf("read %v payload: %w", m.req, err))
		}
	}
	if len(fds) > maxFDs {
		return fail(fmt.Errorf("%v: %d file descriptors, more than %d", m.req, len(fds), maxFDs))
	}
	m.fds = fds
	return m, nil
}

// recvFull fills b, collecting descriptors on the way.
func (c *conn) recvFull(b []byte) (int, []int, error) {
	var fds []int
	got := 0
	for got < len(b) {
		n, more, err := c.recv(b[got:])
		fds = append(fds, more...)
		if err != nil {
			return got, fds, err
		}
		if n == 0 {
			return got, fds, io.ErrUnexpectedEOF
		}
		got += n
	}
	return got, fds, nil
}

// recv is one recvmsg, returning the descriptors that came with it (Go
// receives them close-on-exec).
func (c *conn) recv(b []byte) (int, []int, error) {
	n, oobn, flags, _, err := c.uc.ReadMsgUnix(b, c.oob)
	fds, perr := parseRights(c.oob[:oobn])
	switch {
	case err != nil && errors.Is(err, io.EOF):
		closeFDs(fds)
		return 0, nil, nil
	case err != nil:
		closeFDs(fds)
		return 0, nil, fmt.Errorf("recvmsg: %w", err)
	case flags&unix.MSG_CTRUNC != 0:
		closeFDs(fds)
		return 0, nil, fmt.Errorf("too many file descriptors in one message")
	case perr != nil:
		closeFDs(fds)
		return 0, nil, perr
	}
	return n, fds, nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		more, err := unix.ParseUnixRights(&m)
		if err != nil {
			closeFDs(fds)
			return nil, fmt.Errorf("control message: %w", err)
		}
		fds = append(fds, more...)
	}
	return fds, nil
}

// reply sends the reply to req with payload.
func (c *conn) reply(req Request, payload []byte) error {
	b := make([]byte, headerSize+len(payload))
	binary.LittleEndian.PutUint32(b[0:], uint32(req))
	binary.LittleEndian.PutUint32(b[4:], flagVersion|flagReply)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(payload)))
	copy(b[headerSize:], payload)
	if _, err := c.uc.Write(b); err != nil {
		return fmt.Errorf("reply to %v: %w", req, err)
	}
	return nil
}

func (c *conn) replyU64(req Request, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return c.reply(req, b[:])
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
