package migrate

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// rawState is sample() encoded with inodes and handles replaced by raw
// msgpack values.
func rawState(t *testing.T, inodes, handles []byte) []byte {
	t.Helper()
	s := sample()
	var b bytes.Buffer
	b.WriteString(Magic)
	b.Write([]byte{0, Version})
	enc := msgpack.NewEncoder(&b)
	enc.UseCompactInts(true)
	for _, err := range []error{
		enc.EncodeMapLen(7),
		enc.EncodeString("mode"), enc.EncodeString(string(s.Mode)),
		enc.EncodeString("session"), enc.Encode(s.Session),
		enc.EncodeString("options"), enc.Encode(s.Options),
		enc.EncodeString("next_node"), enc.EncodeUint(s.NextNode),
		enc.EncodeString("next_handle"), enc.EncodeUint(s.NextHandle),
		enc.EncodeString("inodes"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	b.Write(inodes)
	if err := enc.EncodeString("handles"); err != nil {
		t.Fatal(err)
	}
	b.Write(handles)
	return b.Bytes()
}

// raw encodes values as one msgpack array of them.
func raw(t *testing.T, values ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := msgpack.NewEncoder(&b)
	enc.UseCompactInts(true)
	if err := enc.EncodeArrayLen(len(values)); err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// kv is a msgpack map with its keys in the order given.
type kv []any

func (m kv) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeMapLen(len(m) / 2); err != nil {
		return err
	}
	for _, v := range m {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

// nilArray is an array32 of n nils.
func nilArray(n int) []byte {
	b := []byte{0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	return append(b, bytes.Repeat([]byte{0xc0}, n)...)
}

// TestDecodeRefuses: the decoder takes what ferryfs writes and nothing
// else, naming the first bad element: the generic decoder took nil for any
// value, ignored unknown keys, and let the last of two keys win.
func TestDecodeRefuses(t *testing.T) {
	okInode := kv{"id", 1, "lookups", 1, "type", dirType}
	// Large enough that a nil after it is not refused for its count.
	bigInode := kv{"id", uint64(1) << 40, "lookups", uint64(1) << 40, "type", dirType}
	bigHandle := kv{"id", uint64(1) << 40, "node", uint64(1) << 40, "flags", 2, "guest_flags", 2}
	noHandles := raw(t)
	tests := []struct {
		name            string
		inodes, handles []byte
		want            string
	}{
		{"nil inode", append([]byte{0x92}, append(raw(t, bigInode)[1:], 0xc0)...), noHandles, "inodes: [1]: nil"},
		{"nil inodes", nilArray(1000), noHandles, "inodes: 1000 elements in the"},
		{"an inode is a number", raw(t, bigInode, 7), noHandles, "inodes: [1]: an integer, want a map"},
		{"unknown key", raw(t, kv{"id", 1, "lookups", 1, "type", dirType, "colour", "red"}), noHandles, `inodes: [0]: unknown key "colour"`},
		{"long unknown key", raw(t, kv{"id", 1, strings.Repeat("k", 100), 1}), noHandles, "inodes: [0]: unknown key of 100 bytes"},
		{"key twice", raw(t, kv{"id", 1, "lookups", 1, "id", 2, "type", dirType}), noHandles, `inodes: [0]: key "id" twice`},
		{"no id", raw(t, kv{"lookups", 1, "type", dirType}), noHandles, "inodes: [0]: no id"},
		{"no type", raw(t, kv{"id", 1, "lookups", 1}), noHandles, "inodes: [0]: no type"},
		{"nil id", raw(t, kv{"id", nil, "lookups", 1, "type", dirType}), noHandles, "inodes: [0]: id: nil, want an integer"},
		{"negative lookups", raw(t, kv{"id", 1, "lookups", -1, "type", dirType}), noHandles, "inodes: [0]: lookups: -1, want a number from 0"},
		{"type past 32 bits", raw(t, kv{"id", 1, "lookups", 1, "type", uint64(1) << 32}), noHandles, "inodes: [0]: type: 4294967296, at most 4294967295"},
		{"name too long", raw(t, okInode, kv{"id", 2, "lookups", 1, "type", dirType, "name", strings.Repeat("n", 5000)}), noHandles, "inodes: [1]: name: string of 5000 bytes, at most 4095"},
		{"nil name", raw(t, kv{"id", 2, "lookups", 1, "type", dirType, "name", nil}), noHandles, "inodes: [0]: name: nil, want a string"},
		{"nil file handle", raw(t, kv{"id", 2, "lookups", 1, "type", dirType, "handle", nil}), noHandles, "inodes: [0]: handle: nil, want a map"},
		{"file handle too long", raw(t, kv{"id", 2, "lookups", 1, "type", dirType, "handle", kv{"mount_id", 1, "type", 1, "bytes", make([]byte, 200)}}), noHandles,
			"inodes: [0]: handle: bytes: 200 bytes, at most 128"},
		{"nil handle", raw(t, okInode), append([]byte{0x93}, append(raw(t, bigHandle, bigHandle)[1:], 0xc0)...), "handles: [2]: nil"},
		{"handle without node", raw(t, okInode), raw(t, kv{"id", 1, "flags", 2, "guest_flags", 2, "lost", 5}), "handles: [0]: no node"},
		{"flags past 32 bits", raw(t, okInode), raw(t, kv{"id", 1, "node", 1, "flags", int64(-1) << 40, "guest_flags", 2}), "handles: [0]: flags: -1099511627776, at least -2147483648"},
		{"inodes not an array", []byte{0x80}, noHandles, "inodes: a map, want an array"},
		{"more inodes than bytes", []byte{0xdd, 0, 1, 0, 0}, noHandles, "inodes: 65536 elements in the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Peek(rawState(t, tt.inodes, tt.handles))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Peek: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestDecodeTopLevel: the state's own map and its session and options are
// held to the same rules.
func TestDecodeTopLevel(t *testing.T) {
	good, _ := Marshal(sample())
	body := good[len(Magic)+2:]
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"nil document", []byte{0xc0}, "decode state: nil, want a map"},
		{"empty map", []byte{0x80}, "decode state: no mode"},
		{"unknown key", append([]byte{0x88}, append(append([]byte(nil), body[1:]...), 0xa1, 'x', 0x01)...), `decode state: unknown key "x"`},
		{"key twice", append([]byte{0x88}, append(append([]byte(nil), body[1:]...), 0xa4, 'm', 'o', 'd', 'e', 0xa1, 'x')...), `decode state: key "mode" twice`},
		{"nil session", bytes.Replace(body, []byte("\xa7session\x87"), []byte("\xa7session\xc0"), 1), "decode state: session: nil, want a map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Peek(append([]byte(Magic+"\x00\x01"), tt.b...))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Peek: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestUnmarshalAllocatesInProportion: decoding and validating a state of
// n bytes allocates at most a small multiple of n, whatever it holds: the
// generic decoder allocated 652 MB for a 1 MiB state of nil inodes.
func TestUnmarshalAllocatesInProportion(t *testing.T) {
	const size = 1 << 20
	many := func(inode func(id uint64) kv) []byte {
		var elems []any
		var n int
		for id := uint64(2); n < size; id++ {
			e := inode(id)
			elems = append(elems, e)
			b, _ := msgpack.Marshal(e)
			n += len(b)
		}
		return raw(t, append([]any{kv{"id", 1, "lookups", 1, "type", dirType}}, elems...)...)
	}
	handles := func(n int) []byte {
		h := make([]any, n)
		for k := range h {
			h[k] = kv{"id", 1, "node", 1, "flags", 0, "guest_flags", 0}
		}
		return raw(t, h...)
	}
	tests := []struct {
		name    string
		b       []byte
		refused bool
	}{
		{"nil inodes", rawState(t, nilArray(size), raw(t)), true},
		{"nil inodes, counted short", rawState(t, append([]byte{0xdd, 0, 0, 1, 0}, bytes.Repeat([]byte{0xc0}, size)...), raw(t)), true},
		{"smallest inodes", rawState(t, many(func(id uint64) kv { return kv{"id", id % 100, "lookups", 1, "type", 1} }), raw(t)), false},
		{"inodes in a directory", rawState(t, many(func(id uint64) kv { return kv{"id", id, "lookups", 1, "type", fileType, "parent", 1, "name", "f"} }), raw(t)), false},
		{"invalid inodes", rawState(t, many(func(id uint64) kv { return kv{"id", id, "lookups", 1, "type", fileType, "invalid", "?"} }), raw(t)), false},
		{"inodes with file handles", rawState(t, many(func(id uint64) kv {
			return kv{"id", id, "lookups", 1, "type", fileType, "handle", kv{"mount_id", 1, "type", 1, "bytes", []byte{1}}}
		}), raw(t)), false},
		{"handles", rawState(t, raw(t, kv{"id", 1, "lookups", 1, "type", dirType}), handles(size/31)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = Unmarshal(tt.b) })
			if tt.refused && err == nil {
				t.Error("accepted")
			}
			t.Logf("%d bytes allocated for %d (%.1f times)", n, len(tt.b), float64(n)/float64(len(tt.b)))
			if limit := 12 * uint64(len(tt.b)); n > limit {
				t.Errorf("%d bytes allocated for a %d-byte state, want at most %d", n, len(tt.b), limit)
			}
		})
	}
}
