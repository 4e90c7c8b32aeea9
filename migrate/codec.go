package migrate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// The encoded state is an envelope, Magic then the format version as a
// big-endian uint16, followed by one msgpack document: the State, its
// fields as a map in declaration order, inodes and handles sorted by id, so
// the same state always gives the same bytes.
const (
	Magic = "FERRYFS\x00"
	// Version is the format this ferryfs writes and the only one it
	// reads. A destination refuses other versions with a clear error
	// rather than misreading them.
	Version = 1
	// MaxEncodedSize bounds what Decode accepts.
	MaxEncodedSize = 1 << 32
)

var errNotState = errors.New("not a ferryfs migration state (bad magic)")

// Encode writes s in the envelope. s's inodes and handles must be sorted
// by id (Validate checks it).
func Encode(w io.Writer, s *State) error {
	var hdr [len(Magic) + 2]byte
	copy(hdr[:], Magic)
	binary.BigEndian.PutUint16(hdr[len(Magic):], Version)
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("write state header: %w", err)
	}
	enc := msgpack.NewEncoder(w)
	enc.UseCompactInts(true)
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return nil
}

// Marshal is Encode into a byte slice.
func Marshal(s *State) ([]byte, error) {
	var b bytes.Buffer
	if err := Encode(&b, s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Unmarshal decodes a state from untrusted bytes and validates it. It
// never panics, and it allocates in proportion to len(b): counts in the
// document are not trusted for preallocation.
func Unmarshal(b []byte) (*State, error) {
	s, err := decode(b)
	if err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("invalid state: %w", err)
	}
	return s, nil
}

// Peek decodes without validating, for tools that show a broken state
// (ferryfs state inspect marks what is wrong instead of refusing).
func Peek(b []byte) (*State, error) { return decode(b) }

func decode(b []byte) (*State, error) {
	if len(b) < len(Magic)+2 || string(b[:len(Magic)]) != Magic {
		return nil, errNotState
	}
	if v := binary.BigEndian.Uint16(b[len(Magic):]); v != Version {
		return nil, fmt.Errorf("state format version %d: this ferryfs reads version %d", v, Version)
	}
	if len(b) > MaxEncodedSize {
		return nil, fmt.Errorf("state of %d bytes: at most %d accepted", len(b), MaxEncodedSize)
	}
	body := b[len(Magic)+2:]
	r := bytes.NewReader(body)
	dec := msgpack.NewDecoder(r)
	var w wireState
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("decode state: %d bytes after the document", r.Len())
	}
	s := &State{
		Mode: w.Mode, Session: w.Session, Options: w.Options,
		NextNode: w.NextNode, NextHandle: w.NextHandle,
		Inodes: w.Inodes, Handles: w.Handles,
	}
	return s, nil
}

// wireState is State as decoded: the same field names, with the two large
// lists decoded element by element.
type wireState struct {
	Mode       Mode       `msgpack:"mode"`
	Session    Session    `msgpack:"session"`
	Options    Options    `msgpack:"options"`
	NextNode   uint64     `msgpack:"next_node"`
	NextHandle uint64     `msgpack:"next_handle"`
	Inodes     inodeList  `msgpack:"inodes"`
	Handles    handleList `msgpack:"handles"`
}

type (
	inodeList  []Inode
	handleList []Handle
)

func (l *inodeList) DecodeMsgpack(d *msgpack.Decoder) error {
	v, err := decodeList[Inode](d, MaxInodes, "inodes")
	*l = v
	return err
}

func (l *handleList) DecodeMsgpack(d *msgpack.Decoder) error {
	v, err := decodeList[Handle](d, MaxHandles, "handles")
	*l = v
	return err
}

// decodeList decodes an array of at most max elements, growing the slice
// as elements actually arrive rather than trusting the array's length.
func decodeList[T any](d *msgpack.Decoder, max int, what string) ([]T, error) {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if n < 0 {
		return nil, nil
	}
	if n > max {
		return nil, fmt.Errorf("%s: %d elements, at most %d", what, n, max)
	}
	out := make([]T, 0, min(n, 1024))
	for k := range n {
		var v T
		if err := d.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", what, k, err)
		}
		out = append(out, v)
	}
	return out, nil
}
