package vhostfront

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// FUSE opcodes (include/uapi/linux/fuse.h; go-fuse keeps its own private).
const (
	OpLookup        uint32 = 1
	OpForget        uint32 = 2
	OpGetattr       uint32 = 3
	OpSetattr       uint32 = 4
	OpReadlink      uint32 = 5
	OpSymlink       uint32 = 6
	OpMknod         uint32 = 8
	OpMkdir         uint32 = 9
	OpUnlink        uint32 = 10
	OpRmdir         uint32 = 11
	OpRename        uint32 = 12
	OpLink          uint32 = 13
	OpOpen          uint32 = 14
	OpRead          uint32 = 15
	OpWrite         uint32 = 16
	OpStatfs        uint32 = 17
	OpRelease       uint32 = 18
	OpFsync         uint32 = 20
	OpSetxattr      uint32 = 21
	OpGetxattr      uint32 = 22
	OpListxattr     uint32 = 23
	OpRemovexattr   uint32 = 24
	OpFlush         uint32 = 25
	OpInit          uint32 = 26
	OpOpendir       uint32 = 27
	OpReaddir       uint32 = 28
	OpReleasedir    uint32 = 29
	OpFsyncdir      uint32 = 30
	OpAccess        uint32 = 34
	OpCreate        uint32 = 35
	OpInterrupt     uint32 = 36
	OpDestroy       uint32 = 38
	OpBatchForget   uint32 = 42
	OpFallocate     uint32 = 43
	OpReaddirplus   uint32 = 44
	OpRename2       uint32 = 45
	OpLseek         uint32 = 46
	OpCopyFileRange uint32 = 47
	OpSyncfs        uint32 = 50
	OpTmpfile       uint32 = 51
)

// RootID is the node id of the shared directory.
const RootID uint64 = 1

// InHeaderSize and OutHeaderSize are the sizes of fuse_in_header and
// fuse_out_header.
const (
	InHeaderSize  = 40
	OutHeaderSize = 16
)

// InitFlags are the capabilities FUSE.Init offers: roughly what a Linux
// 6.x virtio-fs driver offers (INIT_EXT included, so Flags2 is sent).
const InitFlags uint64 = fuse.CAP_ASYNC_READ | fuse.CAP_POSIX_LOCKS | fuse.CAP_ATOMIC_O_TRUNC |
	fuse.CAP_EXPORT_SUPPORT | fuse.CAP_BIG_WRITES | fuse.CAP_DONT_MASK | fuse.CAP_FLOCK_LOCKS |
	fuse.CAP_AUTO_INVAL_DATA | fuse.CAP_READDIRPLUS | fuse.CAP_READDIRPLUS_AUTO | fuse.CAP_ASYNC_DIO |
	fuse.CAP_WRITEBACK_CACHE | fuse.CAP_NO_OPEN_SUPPORT | fuse.CAP_PARALLEL_DIROPS |
	fuse.CAP_HANDLE_KILLPRIV | fuse.CAP_POSIX_ACL | fuse.CAP_ABORT_ERROR | fuse.CAP_MAX_PAGES |
	fuse.CAP_CACHE_SYMLINKS | fuse.CAP_NO_OPENDIR_SUPPORT | fuse.CAP_EXPLICIT_INVAL_DATA |
	fuse.CAP_MAP_ALIGNMENT | fuse.CAP_SUBMOUNTS | fuse.CAP_HANDLE_KILLPRIV_V2 | fuse.CAP_SETXATTR_EXT |
	fuse.CAP_INIT_EXT | fuse.CAP_SECURITY_CTX | fuse.CAP_HAS_INODE_DAX | fuse.CAP_CREATE_SUPP_GROUP

// FUSERequest builds a FUSE request: fuse_in_header followed by the
// argument bytes.
type FUSERequest struct {
	// Header is sent as is, except that Encode fills in Length (unless
	// KeepLength) and FUSE.Do fills in Unique when it is 0.
	Header fuse.InHeader
	// Body is everything after the header.
	Body []byte
	// KeepLength sends Header.Length unchanged, for requests whose length
	// field lies.
	KeepLength bool
}

// NewFUSERequest starts a request with opcode for node.
func NewFUSERequest(opcode uint32, node uint64) *FUSERequest {
	return &FUSERequest{Header: fuse.InHeader{Opcode: opcode, NodeId: node}}
}

// Struct appends the little-endian encoding of v, a go-fuse wire structure
// (or a pointer to one); an embedded fuse.InHeader at its start is left out,
// so the *In structures give their argument part.
func (r *FUSERequest) Struct(v any) *FUSERequest {
	r.Body = append(r.Body, ArgBytes(v)...)
	return r
}

// Name appends s and its terminating NUL.
func (r *FUSERequest) Name(s string) *FUSERequest {
	r.Body = append(append(r.Body, s...), 0)
	return r
}

// Raw appends b.
func (r *FUSERequest) Raw(b []byte) *FUSERequest {
	r.Body = append(r.Body, b...)
	return r
}

// Encode returns the request's bytes.
func (r *FUSERequest) Encode() []byte {
	h := r.Header
	if !r.KeepLength {
		h.Length = uint32(InHeaderSize + len(r.Body))
	}
	return append(ArgBytes(&h), r.Body...)
}

var inHeaderType = reflect.TypeOf(fuse.InHeader{})

// ArgBytes encodes v (a go-fuse wire structure or pointer to one) in little
// endian, leaving out a leading embedded fuse.InHeader.
func ArgBytes(v any) []byte {
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, v); err != nil {
		panic(fmt.Sprintf("vhostfront: encoding %T: %v", v, err))
	}
	b := buf.Bytes()
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if startsWithInHeader(t) {
		b = b[InHeaderSize:]
	}
	return b
}

// startsWithInHeader reports whether struct type t begins with an embedded
// fuse.InHeader, directly or through embedded structs (SetAttrIn embeds
// SetAttrInCommon, which embeds InHeader).
func startsWithInHeader(t reflect.Type) bool {
	for t.Kind() == reflect.Struct && t != inHeaderType && t.NumField() > 0 && t.Field(0).Anonymous {
		t = t.Field(0).Type
		if t == inHeaderType {
			return true
		}
	}
	return false
}

// FUSEReply is a decoded FUSE reply.
type FUSEReply struct {
	Header  fuse.OutHeader
	Payload []byte
}

// Errno returns the reply's error (0 for success).
func (r *FUSEReply) Errno() syscall.Errno { return syscall.Errno(-r.Header.Status) }

// Decode decodes the payload into v (a pointer to a go-fuse out structure
// with only exported fields), checking the payload is exactly that long.
func (r *FUSEReply) Decode(v any) error {
	if n := binary.Size(v); n != len(r.Payload) {
		return fmt.Errorf("reply payload of %d bytes, want %d for %T", len(r.Payload), n, v)
	}
	return binary.Read(bytes.NewReader(r.Payload), binary.LittleEndian, v)
}

// ParseReply decodes b, what the device wrote, as a FUSE reply, checking
// the length field against len(b).
func ParseReply(b []byte) (*FUSEReply, error) {
	if len(b) < OutHeaderSize {
		return nil, fmt.Errorf("FUSE reply of %d bytes, shorter than fuse_out_header", len(b))
	}
	r := &FUSEReply{}
	le := binary.LittleEndian
	r.Header = fuse.OutHeader{Length: le.Uint32(b), Status: int32(le.Uint32(b[4:])), Unique: le.Uint64(b[8:])}
	if int(r.Header.Length) != len(b) {
		return nil, fmt.Errorf("FUSE reply length field %d, but %d bytes written", r.Header.Length, len(b))
	}
	if r.Header.Status > 0 || r.Header.Status < -4095 {
		return nil, fmt.Errorf("FUSE reply status %d", r.Header.Status)
	}
	if r.Header.Status != 0 && len(b) != OutHeaderSize {
		return nil, fmt.Errorf("FUSE error reply (status %d) with %d payload bytes", r.Header.Status, len(b)-OutHeaderSize)
	}
	r.Payload = b[OutHeaderSize:]
	return r, nil
}

// FUSE sends FUSE requests on one queue and waits for each reply.
type FUSE struct {
	Q *Queue
	// ReplySize is the size of the writable buffer given with each
	// request; 0 means 128 KiB.
	ReplySize int
	// Chain shapes the descriptor chains (indirect, split).
	Chain ChainOptions
	// Uid, Gid, Pid fill the request headers.
	Uid, Gid, Pid uint32

	unique uint64
}

// NewFUSE returns a FUSE client on q.
func NewFUSE(q *Queue) *FUSE { return &FUSE{Q: q, Pid: 1} }

func (c *FUSE) replySize() int {
	if c.ReplySize > 0 {
		return c.ReplySize
	}
	return 128 << 10
}

// NextUnique returns a fresh request id.
func (c *FUSE) NextUnique() uint64 {
	c.unique += 2 // the kernel's ids are even; odd ones mark interrupts
	return c.unique
}

// Do sends r (filling in Unique and the caller when zero) with a writable
// buffer of ReplySize bytes and returns the decoded reply, checking its
// unique.
func (c *FUSE) Do(r *FUSERequest) (*FUSEReply, error) {
	return c.DoSize(r, c.replySize())
}

// DoSize is Do with a writable buffer of replySize bytes.
func (c *FUSE) DoSize(r *FUSERequest, replySize int) (*FUSEReply, error) {
	c.fill(r)
	out, err := c.Q.Exchange(r.Encode(), replySize, c.Chain)
	if err != nil {
		return nil, err
	}
	rep, err := ParseReply(out)
	if err != nil {
		return nil, fmt.Errorf("opcode %d: %w", r.Header.Opcode, err)
	}
	if rep.Header.Unique != r.Header.Unique {
		return nil, fmt.Errorf("opcode %d: reply for unique %d, want %d", r.Header.Opcode, rep.Header.Unique, r.Header.Unique)
	}
	return rep, nil
}

func (c *FUSE) fill(r *FUSERequest) {
	if r.Header.Unique == 0 {
		r.Header.Unique = c.NextUnique()
	}
	if r.Header.Uid == 0 && r.Header.Gid == 0 && r.Header.Pid == 0 {
		r.Header.Uid, r.Header.Gid, r.Header.Pid = c.Uid, c.Gid, c.Pid
	}
}

// Send sends r with no writable buffer (FORGET, BATCH_FORGET, INTERRUPT),
// waits for the chain to come back and returns the used length (0 is
// expected).
func (c *FUSE) Send(r *FUSERequest) (uint32, error) {
	c.fill(r)
	sub, err := c.Q.Submit([][]byte{r.Encode()}, nil, c.Chain)
	if err != nil {
		return 0, err
	}
	_, e, err := c.Q.Complete(sub)
	return e.Len, err
}

// call runs r and decodes a successful reply into out (nil for none).
func (c *FUSE) call(r *FUSERequest, out any) error {
	rep, err := c.Do(r)
	if err != nil {
		return err
	}
	if e := rep.Errno(); e != 0 {
		return e
	}
	if out == nil {
		if len(rep.Payload) != 0 {
			return fmt.Errorf("opcode %d: %d unexpected payload bytes", r.Header.Opcode, len(rep.Payload))
		}
		return nil
	}
	return rep.Decode(out)
}

// InitRequest returns FUSE_INIT for protocol 7.minor offering flags.
func InitRequest(minor uint32, flags uint64) *FUSERequest {
	return NewFUSERequest(OpInit, 0).Struct(&fuse.InitIn{
		Major: 7, Minor: minor, MaxReadAhead: 128 << 10,
		Flags: uint32(flags), Flags2: uint32(flags >> 32),
	})
}

// Init sends FUSE_INIT 7.38 with InitFlags and returns the reply. (go-fuse's
// InitOut has an unexported field, so it is decoded by hand.)
func (c *FUSE) Init() (*fuse.InitOut, error) {
	rep, err := c.Do(InitRequest(38, InitFlags))
	if err != nil {
		return nil, err
	}
	return DecodeInitOut(rep)
}

// DecodeInitOut decodes an INIT reply.
func DecodeInitOut(rep *FUSEReply) (*fuse.InitOut, error) {
	if e := rep.Errno(); e != 0 {
		return nil, e
	}
	p := rep.Payload
	if len(p) != 64 {
		return nil, fmt.Errorf("INIT reply payload of %d bytes, want 64", len(p))
	}
	le := binary.LittleEndian
	return &fuse.InitOut{
		Major: le.Uint32(p), Minor: le.Uint32(p[4:]), MaxReadAhead: le.Uint32(p[8:]), Flags: le.Uint32(p[12:]),
		MaxBackground: le.Uint16(p[16:]), CongestionThreshold: le.Uint16(p[18:]),
		MaxWrite: le.Uint32(p[20:]), TimeGran: le.Uint32(p[24:]), MaxPages: le.Uint16(p[28:]),
		MapAlignment: le.Uint16(p[30:]), Flags2: le.Uint32(p[32:]), MaxStackDepth: le.Uint32(p[36:]),
	}, nil
}

// Lookup looks name up in directory parent.
func (c *FUSE) Lookup(parent uint64, name string) (*fuse.EntryOut, error) {
	var out fuse.EntryOut
	return &out, c.call(NewFUSERequest(OpLookup, parent).Name(name), &out)
}

// GetAttr returns node's attributes.
func (c *FUSE) GetAttr(node uint64) (*fuse.AttrOut, error) {
	var out fuse.AttrOut
	return &out, c.call(NewFUSERequest(OpGetattr, node).Struct(&fuse.GetAttrIn{}), &out)
}

// Create creates and opens name in parent.
func (c *FUSE) Create(parent uint64, name string, flags, mode uint32) (*fuse.CreateOut, error) {
	var out fuse.CreateOut
	r := NewFUSERequest(OpCreate, parent).Struct(&fuse.CreateIn{Flags: flags, Mode: mode}).Name(name)
	return &out, c.call(r, &out)
}

// Mkdir creates directory name in parent.
func (c *FUSE) Mkdir(parent uint64, name string, mode uint32) (*fuse.EntryOut, error) {
	var out fuse.EntryOut
	return &out, c.call(NewFUSERequest(OpMkdir, parent).Struct(&fuse.MkdirIn{Mode: mode}).Name(name), &out)
}

// Open opens node.
func (c *FUSE) Open(node uint64, flags uint32) (*fuse.OpenOut, error) {
	var out fuse.OpenOut
	return &out, c.call(NewFUSERequest(OpOpen, node).Struct(&fuse.OpenIn{Flags: flags}), &out)
}

// Write writes data at off through handle fh of node and returns the count.
func (c *FUSE) Write(node, fh, off uint64, data []byte) (uint32, error) {
	var out fuse.WriteOut
	r := NewFUSERequest(OpWrite, node).Struct(&fuse.WriteIn{Fh: fh, Offset: off, Size: uint32(len(data))}).Raw(data)
	return out.Size, c.call(r, &out)
}

// Read reads up to size bytes at off through handle fh of node.
func (c *FUSE) Read(node, fh, off uint64, size uint32) ([]byte, error) {
	rep, err := c.Do(NewFUSERequest(OpRead, node).Struct(&fuse.ReadIn{Fh: fh, Offset: off, Size: size}))
	if err != nil {
		return nil, err
	}
	if e := rep.Errno(); e != 0 {
		return nil, e
	}
	return rep.Payload, nil
}

// Release closes handle fh of node.
func (c *FUSE) Release(node, fh uint64) error {
	return c.call(NewFUSERequest(OpRelease, node).Struct(&fuse.ReleaseIn{Fh: fh}), nil)
}

// Forget drops nlookup references from node; it takes no reply.
func (c *FUSE) Forget(node, nlookup uint64) error {
	n, err := c.Send(NewFUSERequest(OpForget, node).Struct(&fuse.ForgetIn{Nlookup: nlookup}))
	if err == nil && n != 0 {
		err = fmt.Errorf("FORGET: device wrote %d bytes", n)
	}
	return err
}
