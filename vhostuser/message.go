// Package vhostuser is the back-end side of the vhost-user protocol
// (QEMU's docs/interop/vhost-user.rst): it takes the front-end's messages
// over a unix socket, maps the guest memory and the rings it describes, and
// runs each started ring, handing its descriptor chains to a Device.
//
// The package knows nothing of what the device does with a chain. It
// checks what the front-end sends: a message that breaks the protocol ends
// the connection with an error naming the message; a bad chain fails only
// that chain (see package virtqueue).
package vhostuser

import (
	"encoding/binary"
	"fmt"
)

// Request is a front-end message type.
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
	SetBackendReqFD     Request = 21
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

var requestNames = map[Request]string{
	GetFeatures: "GET_FEATURES", SetFeatures: "SET_FEATURES", SetOwner: "SET_OWNER",
	ResetOwner: "RESET_OWNER", SetMemTable: "SET_MEM_TABLE", SetLogBase: "SET_LOG_BASE",
	SetLogFD: "SET_LOG_FD", SetVringNum: "SET_VRING_NUM", SetVringAddr: "SET_VRING_ADDR",
	SetVringBase: "SET_VRING_BASE", GetVringBase: "GET_VRING_BASE", SetVringKick: "SET_VRING_KICK",
	SetVringCall: "SET_VRING_CALL", SetVringErr: "SET_VRING_ERR", GetProtocolFeatures: "GET_PROTOCOL_FEATURES",
	SetProtocolFeatures: "SET_PROTOCOL_FEATURES", GetQueueNum: "GET_QUEUE_NUM", SetVringEnable: "SET_VRING_ENABLE",
	SetBackendReqFD: "SET_BACKEND_REQ_FD", GetConfig: "GET_CONFIG", SetConfig: "SET_CONFIG",
	ResetDevice: "RESET_DEVICE", GetMaxMemSlots: "GET_MAX_MEM_SLOTS", AddMemReg: "ADD_MEM_REG",
	RemMemReg: "REM_MEM_REG", SetStatus: "SET_STATUS", GetStatus: "GET_STATUS",
	SetDeviceStateFD: "SET_DEVICE_STATE_FD", CheckDeviceState: "CHECK_DEVICE_STATE",
}

func (r Request) String() string {
	if n, ok := requestNames[r]; ok {
		return n
	}
	return fmt.Sprintf("request %d", uint32(r))
}

// Virtio and vhost feature bits.
const (
	FeatureNotifyOnEmpty    = 1 << 24
	FeatureLogAll           = 1 << 26 // VHOST_F_LOG_ALL
	FeatureIndirectDesc     = 1 << 28
	FeatureEventIdx         = 1 << 29
	FeatureProtocolFeatures = 1 << 30 // VHOST_USER_F_PROTOCOL_FEATURES
	FeatureVersion1         = 1 << 32
)

// Protocol feature bits.
const (
	ProtocolMQ                = 1 << 0
	ProtocolLogShmfd          = 1 << 1
	ProtocolReplyAck          = 1 << 3
	ProtocolBackendReq        = 1 << 5
	ProtocolConfig            = 1 << 9
	ProtocolResetDevice       = 1 << 13
	ProtocolConfigureMemSlots = 1 << 15
	ProtocolStatus            = 1 << 16
	ProtocolDeviceState       = 1 << 19
)

// Header flags.
const (
	flagVersion     = 0x1
	flagVersionMask = 0x3
	flagReply       = 1 << 2
	flagNeedReply   = 1 << 3
)

const headerSize = 12

// maxPayload bounds a message body. The largest we take is a memory table
// of 8 regions (8 + 8*32 bytes) or a config space read (12 + 256).
const maxPayload = 4096

// maxFDs is the most descriptors one message may carry (a memory table's
// 8 regions).
const maxFDs = 8

// maxMemSlots is what GET_MAX_MEM_SLOTS answers: the regions we map.
const maxMemSlots = 32

// message is one front-end message.
type message struct {
	req     Request
	flags   uint32
	payload []byte
	fds     []int
}

func (m *message) needReply() bool { return m.flags&flagNeedReply != 0 }

// u64 decodes a payload holding one u64.
func (m *message) u64() (uint64, error) {
	if len(m.payload) < 8 {
		return 0, fmt.Errorf("payload of %d bytes, want 8", len(m.payload))
	}
	return binary.LittleEndian.Uint64(m.payload), nil
}

// vringState decodes {index, num}.
func (m *message) vringState() (index, num uint32, err error) {
	if len(m.payload) < 8 {
		return 0, 0, fmt.Errorf("payload of %d bytes, want 8", len(m.payload))
	}
	return binary.LittleEndian.Uint32(m.payload), binary.LittleEndian.Uint32(m.payload[4:]), nil
}

// vringAddr is struct vhost_vring_addr.
type vringAddr struct {
	index                          uint32
	flags                          uint32
	desc, used, avail, logGuestAdr uint64
}

const vringAddrSize = 40

// vringFLog is VHOST_VRING_F_LOG in vringAddr.flags.
const vringFLog = 1

func (m *message) vringAddr() (vringAddr, error) {
	p := m.payload
	if len(p) < vringAddrSize {
		return vringAddr{}, fmt.Errorf("payload of %d bytes, want %d", len(p), vringAddrSize)
	}
	le := binary.LittleEndian
	return vringAddr{
		index: le.Uint32(p), flags: le.Uint32(p[4:]),
		desc: le.Uint64(p[8:]), used: le.Uint64(p[16:]), avail: le.Uint64(p[24:]), logGuestAdr: le.Uint64(p[32:]),
	}, nil
}

// region is a memory region description.
type region struct {
	guestAddr, size, userAddr, mmapOffset uint64
}

const regionSize = 32

func decodeRegion(p []byte) region {
	le := binary.LittleEndian
	return region{le.Uint64(p), le.Uint64(p[8:]), le.Uint64(p[16:]), le.Uint64(p[24:])}
}

// memTable decodes SET_MEM_TABLE's payload.
func (m *message) memTable() ([]region, error) {
	p := m.payload
	if len(p) < 8 {
		return nil, fmt.Errorf("payload of %d bytes", len(p))
	}
	n := binary.LittleEndian.Uint32(p)
	if n == 0 || n > maxFDs {
		return nil, fmt.Errorf("%d regions, want 1 to %d", n, maxFDs)
	}
	if len(p) < 8+int(n)*regionSize {
		return nil, fmt.Errorf("%d regions in %d bytes", n, len(p))
	}
	if len(m.fds) != int(n) {
		return nil, fmt.Errorf("%d regions but %d file descriptors", n, len(m.fds))
	}
	rs := make([]region, n)
	for i := range rs {
		rs[i] = decodeRegion(p[8+i*regionSize:])
	}
	return rs, nil
}

// singleRegion decodes ADD_MEM_REG's and REM_MEM_REG's payload.
func (m *message) singleRegion() (region, error) {
	if len(m.payload) < 8+regionSize {
		return region{}, fmt.Errorf("payload of %d bytes, want %d", len(m.payload), 8+regionSize)
	}
	return decodeRegion(m.payload[8:]), nil
}

// logBase decodes SET_LOG_BASE's {size, offset}.
func (m *message) logBase() (size, offset uint64, err error) {
	if len(m.payload) < 16 {
		return 0, 0, fmt.Errorf("payload of %d bytes, want 16", len(m.payload))
	}
	return binary.LittleEndian.Uint64(m.payload), binary.LittleEndian.Uint64(m.payload[8:]), nil
}

// deviceStateTransfer decodes SET_DEVICE_STATE_FD's parameters: u32
// direction, u32 phase.
func (m *message) deviceStateTransfer() (direction, phase uint32, err error) {
	if len(m.payload) != 8 {
		return 0, 0, fmt.Errorf("device state transfer parameters of %d bytes, want 8", len(m.payload))
	}
	return binary.LittleEndian.Uint32(m.payload), binary.LittleEndian.Uint32(m.payload[4:]), nil
}

// configSpace decodes GET_CONFIG's {offset, size, flags}.
func (m *message) configSpace() (offset, size uint32, err error) {
	if len(m.payload) < 12 {
		return 0, 0, fmt.Errorf("payload of %d bytes, want at least 12", len(m.payload))
	}
	offset, size = binary.LittleEndian.Uint32(m.payload), binary.LittleEndian.Uint32(m.payload[4:])
	if size > 256 || len(m.payload) != 12+int(size) {
		return 0, 0, fmt.Errorf("config access of %d bytes in a payload of %d", size, len(m.payload))
	}
	return offset, size, nil
}
