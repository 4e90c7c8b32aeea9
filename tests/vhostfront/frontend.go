package vhostfront

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"
)

// Options configure a Frontend. The zero value is what QEMU does for a
// vhost-user-fs device whose guest driver supports VERSION_1, indirect
// descriptors and EVENT_IDX.
type Options struct {
	// MemSize is the size of guest memory; 0 means 64 MiB.
	MemSize uint64
	// GuestBase is the guest address of guest memory; 0 means 0x100000.
	GuestBase uint64
	// Features are the virtio features the front-end wants; it
	// acknowledges those the back-end offers. 0 means VERSION_1 |
	// INDIRECT_DESC | EVENT_IDX | PROTOCOL_FEATURES.
	Features uint64
	// NoEventIdx leaves VIRTIO_RING_F_EVENT_IDX out of the default
	// Features.
	NoEventIdx bool
	// Protocol are the protocol features the front-end wants; 0 means
	// REPLY_ACK | MQ | CONFIG | RESET_DEVICE. The acknowledged set is
	// their intersection with the back-end's offer.
	Protocol uint64
	// Memory, when set, is used as guest memory instead of a new one (a
	// second back-end over the same guest, as for a migration
	// destination); MemSize and GuestBase are then ignored, and Close
	// leaves the memory to its owner.
	Memory *Memory
}

// Frontend is a vhost-user front-end on one connection, with the guest
// memory it shares.
type Frontend struct {
	Conn *Conn
	Mem  *Memory
	// Offered and Acked are the virtio features the back-end offered and
	// the front-end acknowledged; ProtoOffered and ProtoAcked the same for
	// protocol features.
	Offered, Acked           uint64
	ProtoOffered, ProtoAcked uint64
	// QueueNum is the back-end's GET_QUEUE_NUM answer.
	QueueNum uint64
	// Queues are the queues started with StartQueue, by index.
	Queues map[int]*Queue

	opts    Options
	ownsMem bool
}

// NewFrontend returns a front-end on conn with fresh guest memory; nothing
// is sent yet.
func NewFrontend(conn *Conn, opts Options) (*Frontend, error) {
	if opts.MemSize == 0 {
		opts.MemSize = 64 << 20
	}
	if opts.GuestBase == 0 {
		opts.GuestBase = 0x100000
	}
	if opts.Features == 0 {
		opts.Features = FeatureVersion1 | FeatureIndirectDesc | FeatureEventIdx | FeatureProtocolFeatures
		if opts.NoEventIdx {
			opts.Features &^= FeatureEventIdx
		}
	}
	if opts.Protocol == 0 {
		opts.Protocol = ProtocolReplyAck | ProtocolMQ | ProtocolConfig | ProtocolResetDevice
	}
	if opts.Memory != nil {
		return &Frontend{Conn: conn, Mem: opts.Memory, Queues: map[int]*Queue{}, opts: opts}, nil
	}
	mem, err := NewMemory(opts.GuestBase, opts.MemSize)
	if err != nil {
		return nil, err
	}
	return &Frontend{Conn: conn, Mem: mem, Queues: map[int]*Queue{}, opts: opts, ownsMem: true}, nil
}

// ReplyAck reports whether REPLY_ACK was negotiated.
func (f *Frontend) ReplyAck() bool { return f.ProtoAcked&ProtocolReplyAck != 0 }

// Set sends a message that takes no reply, asking for a REPLY_ACK when it
// was negotiated (as QEMU does for the messages it cares about); a refusal
// comes back as an *AckError.
func (f *Frontend) Set(req Request, payload []byte, fds []int) error {
	if f.ReplyAck() {
		return f.Conn.SendAck(req, payload, fds)
	}
	return f.Conn.Send(req, 0, payload, fds)
}

// Negotiate does what QEMU does on connection: GET_FEATURES,
// GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_OWNER,
// SET_FEATURES.
func (f *Frontend) Negotiate() error {
	var err error
	if f.Offered, err = f.Conn.CallU64(GetFeatures); err != nil {
		return fmt.Errorf("GET_FEATURES: %w", err)
	}
	f.Acked = f.Offered & f.opts.Features
	if f.Offered&FeatureProtocolFeatures != 0 && f.Acked&FeatureProtocolFeatures != 0 {
		if f.ProtoOffered, err = f.Conn.CallU64(GetProtocolFeatures); err != nil {
			return fmt.Errorf("GET_PROTOCOL_FEATURES: %w", err)
		}
		proto := f.ProtoOffered & f.opts.Protocol
		if err := f.Conn.Send(SetProtocolFeatures, 0, U64(proto), nil); err != nil {
			return fmt.Errorf("SET_PROTOCOL_FEATURES: %w", err)
		}
		f.ProtoAcked = proto
		if proto&ProtocolMQ != 0 {
			if f.QueueNum, err = f.Conn.CallU64(GetQueueNum); err != nil {
				return fmt.Errorf("GET_QUEUE_NUM: %w", err)
			}
		}
	}
	if err := f.Set(SetOwner, nil, nil); err != nil {
		return fmt.Errorf("SET_OWNER: %w", err)
	}
	if err := f.Set(SetFeatures, U64(f.Acked), nil); err != nil {
		return fmt.Errorf("SET_FEATURES: %w", err)
	}
	return nil
}

// SetMemTable sends the guest memory as a one-region SET_MEM_TABLE.
func (f *Frontend) SetMemTable() error {
	if err := f.Set(SetMemTable, MemTable(f.Mem.Region()), []int{f.Mem.FD}); err != nil {
		return fmt.Errorf("SET_MEM_TABLE: %w", err)
	}
	return nil
}

// Setup is Negotiate then SetMemTable.
func (f *Frontend) Setup() error {
	if err := f.Negotiate(); err != nil {
		return err
	}
	return f.SetMemTable()
}

// StartQueue lays out queue index with size descriptors in guest memory
// and starts it on the back-end as QEMU does: SET_VRING_NUM,
// SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_CALL, SET_VRING_ERR,
// SET_VRING_KICK, then
// SET_VRING_ENABLE when protocol features were negotiated.
func (f *Frontend) StartQueue(index int, size uint16) (*Queue, error) {
	q, err := f.NewQueue(index, size)
	if err != nil {
		return nil, err
	}
	if err := f.ConfigureQueue(q); err != nil {
		return nil, err
	}
	return q, nil
}

// NewQueue lays out a queue in guest memory (Queue.EventIdx set from the
// negotiated features) without telling the back-end.
func (f *Frontend) NewQueue(index int, size uint16) (*Queue, error) {
	q, err := NewQueue(f.Mem, index, size)
	if err != nil {
		return nil, err
	}
	q.EventIdx = f.Acked&FeatureEventIdx != 0
	f.Queues[index] = q
	return q, nil
}

// ConfigureQueue sends q's configuration to the back-end (see StartQueue).
// The base sent is q.AvailIdx(): the next chain the driver will make
// available, which is where a back-end taking over a drained queue (after
// GET_VRING_BASE on the previous one) starts. q may come from another
// Frontend sharing the same Memory.
func (f *Frontend) ConfigureQueue(q *Queue) error {
	idx := uint32(q.Index)
	steps := []struct {
		req     Request
		payload []byte
		fds     []int
	}{
		{SetVringNum, VringState(idx, uint32(q.Size)), nil},
		{SetVringBase, VringState(idx, uint32(q.AvailIdx())), nil},
		{SetVringAddr, q.Addr().Encode(), nil},
		{SetVringCall, U64(uint64(idx)), []int{q.CallFD}},
		{SetVringErr, U64(uint64(idx)), []int{q.ErrFD}},
		{SetVringKick, U64(uint64(idx)), []int{q.KickFD}},
	}
	if f.Acked&FeatureProtocolFeatures != 0 {
		steps = append(steps, struct {
			req     Request
			payload []byte
			fds     []int
		}{SetVringEnable, VringState(idx, 1), nil})
	}
	for _, s := range steps {
		if err := f.Set(s.req, s.payload, s.fds); err != nil {
			return fmt.Errorf("queue %d: request %d: %w", q.Index, s.req, err)
		}
	}
	return nil
}

// GetVringBase stops queue index on the back-end and returns its base (the
// next available index it would process).
func (f *Frontend) GetVringBase(index int) (uint32, error) {
	m, err := f.Conn.Call(GetVringBase, VringState(uint32(index), 0), nil)
	if err != nil {
		return 0, err
	}
	closeAll(m.FDs)
	if len(m.Payload) != 8 {
		return 0, fmt.Errorf("GET_VRING_BASE reply of %d bytes", len(m.Payload))
	}
	return binary.LittleEndian.Uint32(m.Payload[4:]), nil
}

// Close closes the connection (the back-end sees the front-end go away),
// then releases the eventfds of the queues it made and the guest memory
// (unless it came from Options.Memory).
func (f *Frontend) Close() error {
	err := f.Conn.Close()
	for _, q := range f.Queues {
		q.Close()
	}
	if f.ownsMem {
		f.Mem.Close()
	}
	return err
}

// IsAckError reports whether err is a refusal by REPLY_ACK (the connection
// is still usable) rather than a broken connection.
func IsAckError(err error) bool {
	var a *AckError
	return errors.As(err, &a)
}

// Connect dials the daemon (waiting up to timeout for it to listen), and
// negotiates and sends the memory table (Setup) on a new Frontend.
func Connect(d *Daemon, opts Options, timeout time.Duration) (*Frontend, error) {
	conn, err := d.Dial(timeout)
	if err != nil {
		return nil, err
	}
	f, err := NewFrontend(conn, opts)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := f.Setup(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Device state transfer directions (SET_DEVICE_STATE_FD).
const (
	StateSave uint32 = 0
	StateLoad uint32 = 1
)

// SetDeviceStateFD sends SET_DEVICE_STATE_FD with a new pipe's end for
// direction (the read end to save, the write end to load) and returns the
// reply and the front-end's end of the pipe, which the caller closes.
func (f *Frontend) SetDeviceStateFD(direction, phase uint32) (reply uint64, end *os.File, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, nil, err
	}
	theirs, ours := w, r
	if direction == StateLoad {
		theirs, ours = r, w
	}
	p := binary.LittleEndian.AppendUint32(nil, direction)
	p = binary.LittleEndian.AppendUint32(p, phase)
	m, err := f.Conn.Call(SetDeviceStateFD, p, []int{int(theirs.Fd())})
	theirs.Close()
	if err != nil {
		ours.Close()
		return 0, nil, fmt.Errorf("SET_DEVICE_STATE_FD: %w", err)
	}
	if reply, err = m.U64(); err != nil {
		ours.Close()
		return 0, nil, err
	}
	return reply, ours, nil
}
