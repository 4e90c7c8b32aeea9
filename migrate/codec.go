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
// never panics, and it allocates a small multiple of len(b): a count in
// the document is trusted only as far as the bytes left can hold its
// elements, and an element costs its fixed size plus the strings it
// carries (see wireReader).
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
	r := &wireReader{b: b[len(Magic)+2:]}
	s, err := r.state()
	if err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if r.left() != 0 {
		return nil, fmt.Errorf("decode state: %d bytes after the document", r.left())
	}
	return s, nil
}
