package vhostfront

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"
)

// Request is a vhost-user front-end message type (QEMU's
// docs/interop/vhost-user.rst, "Front-end message types").
type Request uint32

// Front-end message types.
const (
	GetFeatures         Request = 1
	SetFeatures         Request = 2
	SetOwner            Request = 3
	ResetOwner          Request = 4
	SetMemTable         Request = 5
	SetLogBase          Request = 6
	SetLogFD            Request = 7
	SetVringNum         Request = 8
	SetVringAddr        Request = 9
	SetVringBase        Request = 10
	GetVringBase        Request = 11
	SetVringKick        Request = 12
	SetVringCall        Request = 13
	SetVringErr         Request = 14
	GetProtocolFeatures Request = 15
	SetProtocolFeatures Request = 16
	GetQueueNum         Request = 17
	SetVringEnable      Request = 18
	SendRARP            Request = 19
	NetSetMTU           Request = 20
	SetBackendReqFD     Request = 21
	IOTLBMsg            Request = 22
	SetVringEndian      Request = 23
	GetConfig           Request = 24
	SetConfig           Request = 25
	ResetDevice         Request = 34
	GetMaxMemSlots      Request = 36
	AddMemReg           Request = 37
	RemMemReg           Request = 38
	SetStatus           Request = 39
	GetStatus           Request = 40
	SetDeviceStateFD    Request = 42
	CheckDeviceState    Request = 43
)

// Virtio and vhost feature bits (GET_FEATURES / SET_FEATURES).
const (
	FeatureNotifyOnEmpty    uint64 = 1 << 24
	FeatureLogAll           uint64 = 1 << 26
	FeatureIndirectDesc     uint64 = 1 << 28
	FeatureEventIdx         uint64 = 1 << 29
	FeatureProtocolFeatures uint64 = 1 << 30
	FeatureVersion1         uint64 = 1 << 32
)

// Protocol feature bits (GET_PROTOCOL_FEATURES / SET_PROTOCOL_FEATURES).
const (
	ProtocolMQ                uint64 = 1 << 0
	ProtocolLogShmfd          uint64 = 1 << 1
	ProtocolReplyAck          uint64 = 1 << 3
	ProtocolBackendReq        uint64 = 1 << 5
	ProtocolConfig            uint64 = 1 << 9
	ProtocolResetDevice       uint64 = 1 << 13
	ProtocolConfigureMemSlots uint64 = 1 << 15
	ProtocolStatus            uint64 = 1 << 16
	ProtocolDeviceState       uint64 = 1 << 19
)

// Header flags.
const (
	FlagVersion   uint32 = 0x1    // the protocol version, in the low 2 bits
	FlagReply     uint32 = 1 << 2 // set on the back-end's replies
	FlagNeedReply uint32 = 1 << 3 // asks for a REPLY_ACK
)

// HeaderSize is the size of a message header: request, flags, size.
const HeaderSize = 12

// VringFDInvalid is the "no file descriptor" bit of the SET_VRING_KICK,
// SET_VRING_CALL and SET_VRING_ERR payload.
const VringFDInvalid = 1 << 8

// Message is one vhost-user message as read from the socket.
type Message struct {
	Request Request
	Flags   uint32
	Payload []byte
	FDs     []int
}

// U64 returns the payload as one little-endian u64.
func (m *Message) U64() (uint64, error) {
	if len(m.Payload) != 8 {
		return 0, fmt.Errorf("reply to %d: payload of %d bytes, want 8", m.Request, len(m.Payload))
	}
	return binary.LittleEndian.Uint64(m.Payload), nil
}

// ErrTimeout is returned when a wait of this package runs out of time.
var ErrTimeout = errors.New("vhostfront: timed out")

// Conn is a connected vhost-user socket, front-end side.
type Conn struct {
	fd int
	// Timeout bounds each read of a reply; zero means 10 seconds.
	Timeout time.Duration
}

// Dial connects to the vhost-user socket at path once.
func Dial(path string) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %s: %w", path, err)
	}
	return &Conn{fd: fd}, nil
}

// NewConn wraps an already connected unix stream socket; the Conn owns it.
func NewConn(fd int) *Conn { return &Conn{fd: fd} }

// FD returns the socket's descriptor.
func (c *Conn) FD() int { return c.fd }

// Close closes the socket. It may be called more than once.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

func (c *Conn) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 10 * time.Second
}

// EncodeHeader returns a message header.
func EncodeHeader(req Request, flags, size uint32) []byte {
	b := make([]byte, HeaderSize)
	binary.LittleEndian.PutUint32(b[0:], uint32(req))
	binary.LittleEndian.PutUint32(b[4:], flags)
	binary.LittleEndian.PutUint32(b[8:], size)
	return b
}

// SendRaw writes b to the socket, with fds (if any) attached to its first
// byte. It does not look at b: any byte stream can be sent.
func (c *Conn) SendRaw(b []byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for len(b) > 0 || oob != nil {
		n, err := unix.SendmsgN(c.fd, b, oob, nil, unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("sendmsg: %w", err)
		}
		b = b[n:]
		oob = nil
	}
	return nil
}

// Send sends a message with version 1 in flags (plus extra flags, such as
// FlagNeedReply) and fds attached.
func (c *Conn) Send(req Request, extraFlags uint32, payload []byte, fds []int) error {
	b := append(EncodeHeader(req, FlagVersion|extraFlags, uint32(len(payload))), payload...)
	return c.SendRaw(b, fds)
}

// Recv reads the next message from the back-end, waiting at most c.Timeout.
// It returns io.EOF when the back-end closed the connection between
// messages.
func (c *Conn) Recv() (*Message, error) {
	deadline := time.Now().Add(c.timeout())
	var hdr [HeaderSize]byte
	fds, err := c.readFull(hdr[:], deadline, true)
	if err != nil {
		return nil, err
	}
	m := &Message{
		Request: Request(binary.LittleEndian.Uint32(hdr[0:])),
		Flags:   binary.LittleEndian.Uint32(hdr[4:]),
		FDs:     fds,
	}
	size := binary.LittleEndian.Uint32(hdr[8:])
	if size > 1<<20 {
		closeAll(fds)
		return nil, fmt.Errorf("reply to %d announces %d payload bytes", m.Request, size)
	}
	m.Payload = make([]byte, size)
	more, err := c.readFull(m.Payload, deadline, false)
	m.FDs = append(m.FDs, more...)
	if err != nil {
		closeAll(m.FDs)
		return nil, err
	}
	return m, nil
}

// readFull fills b before deadline. eofOK says that EOF before the first
// byte is io.EOF rather than io.ErrUnexpectedEOF.
func (c *Conn) readFull(b []byte, deadline time.Time, eofOK bool) ([]int, error) {
	var fds []int
	oob := make([]byte, unix.CmsgSpace(4*16))
	got := 0
	for got < len(b) {
		if err := c.waitReadable(deadline); err != nil {
			return fds, err
		}
		n, oobn, _, _, err := unix.Recvmsg(c.fd, b[got:], oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return fds, fmt.Errorf("recvmsg: %w", err)
		}
		if oobn > 0 {
			if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
				for i := range msgs {
					if r, err := unix.ParseUnixRights(&msgs[i]); err == nil {
						fds = append(fds, r...)
					}
				}
			}
		}
		if n == 0 {
			if got == 0 && eofOK {
				return fds, io.EOF
			}
			return fds, io.ErrUnexpectedEOF
		}
		got += n
	}
	return fds, nil
}

func (c *Conn) waitReadable(deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("waiting for the back-end's reply: %w", ErrTimeout)
		}
		pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			return nil
		}
	}
}

// WaitClosed waits up to timeout for the back-end to close the connection,
// discarding whatever it still sends. It returns nil once the socket reads
// EOF (or a connection reset).
func (c *Conn) WaitClosed(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*16))
	for {
		if err := c.waitReadable(deadline); err != nil {
			return fmt.Errorf("the back-end did not close the connection: %w", err)
		}
		n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if oobn > 0 {
			if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
				for i := range msgs {
					if r, err := unix.ParseUnixRights(&msgs[i]); err == nil {
						closeAll(r)
					}
				}
			}
		}
		if err == unix.ECONNRESET || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("recvmsg: %w", err)
		}
	}
}

// Call sends a message that the back-end answers with a reply (the GET_*
// messages) and returns the reply, checking its type and flags.
func (c *Conn) Call(req Request, payload []byte, fds []int) (*Message, error) {
	if err := c.Send(req, 0, payload, fds); err != nil {
		return nil, err
	}
	return c.recvReply(req)
}

func (c *Conn) recvReply(req Request) (*Message, error) {
	m, err := c.Recv()
	if err != nil {
		return nil, fmt.Errorf("reply to %d: %w", req, err)
	}
	if m.Request != req {
		closeAll(m.FDs)
		return nil, fmt.Errorf("reply to %d is of type %d", req, m.Request)
	}
	if m.Flags&0x3 != FlagVersion || m.Flags&FlagReply == 0 {
		closeAll(m.FDs)
		return nil, fmt.Errorf("reply to %d has flags %#x", req, m.Flags)
	}
	return m, nil
}

// CallU64 is Call for messages without payload whose reply is a u64
// (GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS).
func (c *Conn) CallU64(req Request) (uint64, error) {
	m, err := c.Call(req, nil, nil)
	if err != nil {
		return 0, err
	}
	return m.U64()
}

// AckError is a non-zero REPLY_ACK status: the back-end refused the request
// but kept the connection.
type AckError struct {
	Request Request
	Status  uint64
}

func (e *AckError) Error() string {
	return fmt.Sprintf("back-end refused request %d (REPLY_ACK status %d)", e.Request, e.Status)
}

// SendAck sends a message with NEED_REPLY set and waits for the REPLY_ACK
// status; a non-zero status is an *AckError. Only use it once
// VHOST_USER_PROTOCOL_F_REPLY_ACK was negotiated.
func (c *Conn) SendAck(req Request, payload []byte, fds []int) error {
	if err := c.Send(req, FlagNeedReply, payload, fds); err != nil {
		return err
	}
	m, err := c.recvReply(req)
	if err != nil {
		return err
	}
	closeAll(m.FDs)
	status, err := m.U64()
	if err != nil {
		return err
	}
	if status != 0 {
		return &AckError{Request: req, Status: status}
	}
	return nil
}

// U64 encodes a u64 payload.
func U64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// VringState encodes struct vhost_vring_state {index, num}.
func VringState(index, num uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, index)
	return binary.LittleEndian.AppendUint32(b, num)
}

// VringAddr is struct vhost_vring_addr; the ring addresses are front-end
// (user) virtual addresses.
type VringAddr struct {
	Index, Flags                 uint32
	Desc, Used, Avail, LogGuestA uint64
}

// Encode returns the 40-byte payload.
func (a VringAddr) Encode() []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, a.Index)
	b = le.AppendUint32(b, a.Flags)
	b = le.AppendUint64(b, a.Desc)
	b = le.AppendUint64(b, a.Used)
	b = le.AppendUint64(b, a.Avail)
	return le.AppendUint64(b, a.LogGuestA)
}

// Region is a memory region of SET_MEM_TABLE and ADD_MEM_REG.
type Region struct {
	GuestAddr, Size, UserAddr, MmapOffset uint64
}

func (r Region) append(b []byte) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, r.GuestAddr)
	b = le.AppendUint64(b, r.Size)
	b = le.AppendUint64(b, r.UserAddr)
	return le.AppendUint64(b, r.MmapOffset)
}

// MemTable encodes SET_MEM_TABLE's payload: num_regions, padding, regions.
func MemTable(regions ...Region) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(regions)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, r := range regions {
		b = r.append(b)
	}
	return b
}

// SingleRegion encodes ADD_MEM_REG's and REM_MEM_REG's payload.
func SingleRegion(r Region) []byte { return r.append(make([]byte, 8)) }

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
