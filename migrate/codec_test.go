package migrate

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

const (
	dirType  = 0o040000
	fileType = 0o100000
)

// sample is a small valid find-paths state: /a/b, /a/c (open twice), /d.
func sample() *State {
	return &State{
		Mode:       FindPaths,
		Session:    Session{Major: 7, Minor: 38, Flags: 0x48c47039, MaxWrite: 1 << 20, MaxReadahead: 128 << 10, MaxPages: 256, TimeGran: 1},
		Options:    Options{Cache: "auto", Xattr: true, XattrMap: ":map::user.virtiofs.:", TranslateUID: []string{"map:1000:101000:10"}},
		NextNode:   6,
		NextHandle: 3,
		Inodes: []Inode{
			{ID: 1, Lookups: 1, Type: dirType},
			{ID: 2, Lookups: 3, Type: dirType, Parent: 1, Name: "a"},
			{ID: 3, Lookups: 1, Type: fileType, Parent: 2, Name: "b"},
			{ID: 4, Lookups: 2, Type: fileType, Parent: 2, Name: "c"},
			{ID: 5, Lookups: 1, Type: fileType, Parent: 1, Name: "d"},
		},
		Handles: []Handle{{ID: 1, Node: 4, Flags: 2, GuestFlags: 0o102}, {ID: 2, Node: 4, Flags: 0}},
	}
}

func TestRoundTripDeterministic(t *testing.T) {
	s := sample()
	b1, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := Marshal(sample())
	if !bytes.Equal(b1, b2) {
		t.Fatal("the same state encoded to different bytes")
	}
	got, err := Unmarshal(b1)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	b3, _ := Marshal(got)
	if !bytes.Equal(b1, b3) {
		t.Fatal("decode then encode changed the bytes")
	}
	if p, ok := got.Path(3); !ok || p != "a/b" {
		t.Fatalf("path of 3: %q %v", p, ok)
	}
	if got.Handles[0].GuestFlags != 0o102 || got.Options.TranslateUID[0] != "map:1000:101000:10" {
		t.Fatalf("fields lost: %+v", got)
	}
	if !bytes.HasPrefix(b1, []byte(Magic)) || binary.BigEndian.Uint16(b1[len(Magic):]) != Version {
		t.Fatalf("envelope %q", b1[:10])
	}
}

func TestFileHandleState(t *testing.T) {
	s := sample()
	s.Mode = FileHandles
	for k := range s.Inodes[1:] {
		s.Inodes[k+1].Parent, s.Inodes[k+1].Name = 0, ""
		s.Inodes[k+1].Handle = &FileHandle{MountID: 30, Type: 1, Bytes: []byte{1, 2, 3, 4, 5, 6, 7, byte(k)}}
	}
	b, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if h := got.Inodes[4].Handle; h == nil || h.MountID != 30 || h.Bytes[7] != 3 {
		t.Fatalf("handle %+v", h)
	}
}

// TestFindPathsWithHandles: a find-paths state may carry file handles
// (--migration-verify-handles) besides its paths.
func TestFindPathsWithHandles(t *testing.T) {
	s := sample()
	for k := range s.Inodes[1:] {
		s.Inodes[k+1].Handle = &FileHandle{MountID: 30, Type: 1, Bytes: []byte{1, 2, 3, byte(k)}}
	}
	b, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if p, ok := got.Path(3); !ok || p != "a/b" || got.Inodes[2].Handle == nil || got.Inodes[2].Handle.Bytes[3] != 1 {
		t.Fatalf("inode 3: path %q %v, handle %+v", p, ok, got.Inodes[2].Handle)
	}
	if d := Describe(&got.Inodes[2], got.Paths()); d != "/a/b" {
		t.Errorf("described as %q, want its path", d)
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	good, _ := Marshal(sample())
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "bad magic"},
		{"other file", []byte("hello world, not a state"), "bad magic"},
		{"future version", append([]byte(Magic+"\x00\x02"), good[len(Magic)+2:]...), "format version 2: this ferryfs reads version 1"},
		{"truncated", good[:len(good)-5], "decode state"},
		{"trailing bytes", append(append([]byte(nil), good...), 0xc0), "bytes after the document"},
	}
	mutate := func(f func(s *State)) []byte {
		s := sample()
		f(s)
		b, err := Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests = append(tests, []struct {
		name string
		b    []byte
		want string
	}{
		{"cycle", mutate(func(s *State) { s.Inodes[1].Parent = 3; s.Inodes[2].Type = dirType }), "cycle"},
		// Validate skips an invalid inode's name and handle checks, so
		// its parent must not lead anywhere: a chain looping through it
		// would pass, and a destination following it never ends.
		{"cycle through an invalid inode", mutate(func(s *State) {
			s.Inodes[1].Parent = 3
			s.Inodes[2].Type, s.Inodes[2].Invalid = dirType, "removed on the host"
		}), "inode 3: invalid, yet its parent is 2"},
		{"invalid with a missing parent", mutate(func(s *State) { s.Inodes[4].Parent, s.Inodes[4].Invalid = 99, "removed" }), "inode 5: invalid, yet its parent is 99"},
		{"missing parent", mutate(func(s *State) { s.Inodes[4].Parent = 99 }), "parent 99 is not in the state"},
		{"parent not a dir", mutate(func(s *State) { s.Inodes[2].Parent = 5 }), "is not a directory"},
		{"slash in name", mutate(func(s *State) { s.Inodes[2].Name = "../etc" }), "not a relative path of valid components"},
		{"dotdot", mutate(func(s *State) { s.Inodes[2].Name = ".." }), "not a relative path of valid components"},
		{"unsorted", mutate(func(s *State) { s.Inodes[3], s.Inodes[4] = s.Inodes[4], s.Inodes[3] }), "not sorted"},
		{"id past counter", mutate(func(s *State) { s.NextNode = 3 }), "outside 1..2"},
		{"node counter that would wrap", mutate(func(s *State) { s.NextNode = 1<<64 - 1 }), "next node id 18446744073709551615 outside 2..9223372036854775808"},
		{"handle counter that would wrap", mutate(func(s *State) { s.NextHandle = 1<<63 + 1 }), "next handle id 9223372036854775809 outside 1..9223372036854775808"},
		{"handle counter zero", mutate(func(s *State) { s.Handles, s.NextHandle = nil, 0 }), "next handle id 0 outside 1.."},
		{"no root", mutate(func(s *State) { s.Inodes[0].Type = fileType }), "no root directory"},
		{"dangling handle", mutate(func(s *State) { s.Handles[1].Node = 77 }), "node 77 is not in the state"},
		{"handle past counter", mutate(func(s *State) { s.NextHandle = 1 }), "not below the next handle id"},
		{"bad mode", mutate(func(s *State) { s.Mode = "teleport" }), "invalid migration mode"},
		{"old session", mutate(func(s *State) { s.Session.Minor = 12 }), "FUSE session 7.12"},
		{"no lookups", mutate(func(s *State) { s.Inodes[3].Lookups = 0 }), "has no lookups"},
		{"handle mode without handle", mutate(func(s *State) { s.Mode = FileHandles }), "no valid file handle"},
		{"unlinked directory", mutate(func(s *State) { s.Inodes[1].Unlinked, s.Inodes[1].Parent, s.Inodes[1].Name = true, 1, "h/x" }), "an unlinked file must be"},
		{"unlinked in a subdirectory", mutate(func(s *State) { s.Inodes[3].Unlinked = true; s.Inodes[3].Name = "h/x" }), "an unlinked file must be"},
		{"unlinked with one component", mutate(func(s *State) { s.Inodes[4].Unlinked = true }), "an unlinked file must be"},
		{"unlinked three deep", mutate(func(s *State) { s.Inodes[4].Unlinked, s.Inodes[4].Name = true, "h/x/y" }), "an unlinked file must be"},
		{"gone without reason", mutate(func(s *State) { s.Inodes[4].Gone = true }), "gone or lost, but no reason given"},
		{"lost without reason", mutate(func(s *State) { s.Inodes[4].Lost = 116 }), "gone or lost, but no reason given"},
		{"lost with no errno", mutate(func(s *State) { s.Inodes[4].Lost, s.Inodes[4].Invalid = 1<<20, "lost" }), "not an errno"},
		{"handle lost with no errno", mutate(func(s *State) { s.Handles[0].Lost = 5000 }), "not an errno"},
		{"open on a lost inode", mutate(func(s *State) { s.Inodes[3].Lost, s.Inodes[3].Invalid = 116, "lost" }), "yet the handle was not"},
		{"open yet gone", mutate(func(s *State) { s.Inodes[3].Gone, s.Inodes[3].Invalid = true, "removed" }), "open, yet marked gone"},
		{"empty handle to verify a path by", mutate(func(s *State) { s.Inodes[2].Handle = &FileHandle{Type: 1} }), "invalid file handle to verify its path by"},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Unmarshal(tt.b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Unmarshal: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestHugeCountsDoNotAllocate: a document claiming millions of inodes in a
// few bytes fails on the missing bytes, without preallocating for them.
func TestHugeCountsDoNotAllocate(t *testing.T) {
	b := []byte(Magic + "\x00\x01")
	b = append(b, 0x81)                         // map of 1
	b = append(b, 0xa6)                         // str 6
	b = append(b, "inodes"...)                  //
	b = append(b, 0xdd, 0x03, 0xff, 0xff, 0xff) // array32 of 67 M
	allocs := testing.AllocsPerRun(10, func() { Unmarshal(b) })
	if allocs > 100 {
		t.Fatalf("%v allocations", allocs)
	}
	res := testing.Benchmark(func(b2 *testing.B) {
		b2.ReportAllocs()
		for range b2.N {
			Unmarshal(b)
		}
	})
	if res.AllocedBytesPerOp() > 1<<20 {
		t.Fatalf("%d bytes allocated for a %d-byte state", res.AllocedBytesPerOp(), len(b))
	}
}

func FuzzUnmarshal(f *testing.F) {
	good, _ := Marshal(sample())
	f.Add(good)
	s := sample()
	s.Mode = FileHandles
	s.Inodes = s.Inodes[:1]
	s.Handles = nil
	b, _ := Marshal(s)
	f.Add(b)
	f.Add([]byte(Magic + "\x00\x01\x80"))
	// The defects of issue 14: a loop through an invalid inode, a deep
	// chain listed deepest first, counters that would wrap, nil inodes,
	// unknown and repeated keys.
	s = sample()
	s.Inodes[1].Parent = 3
	s.Inodes[2].Type, s.Inodes[2].Invalid = dirType, "removed"
	b, _ = Marshal(s)
	f.Add(b)
	s = chain(300)
	for k := range s.Inodes[1:] {
		i := &s.Inodes[k+1]
		i.Parent = i.ID + 1
		if i.ID == s.NextNode-1 {
			i.Parent = RootID
		}
	}
	b, _ = Marshal(s)
	f.Add(b)
	s = sample()
	s.NextNode, s.NextHandle = 1<<64-1, 1<<64-1
	b, _ = Marshal(s)
	f.Add(b)
	f.Add(append([]byte(Magic+"\x00\x01\x81\xa6inodes"), nilArray(64)...))
	f.Add(bytes.Replace(good, []byte("\xa7lookups"), []byte("\xa7lookupz"), 1))
	f.Add(bytes.Replace(good, []byte("\xa7lookups"), []byte("\xa7parent\x00"), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s *State
		var err error
		// Decoding and validating cost a small multiple of the
		// bytes, whatever they hold (the few KiB are the fixed cost
		// of a state and of the error messages).
		if n, limit := allocated(func() { s, err = Unmarshal(b) }), 16*uint64(len(b))+64<<10; n > limit {
			t.Fatalf("%d bytes allocated for %d bytes of state, more than %d", n, len(b), limit)
		}
		if err != nil {
			return
		}
		// What is accepted re-encodes and decodes to the same state.
		again, err := Marshal(s)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		s2, err := Unmarshal(again)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		again2, _ := Marshal(s2)
		if !bytes.Equal(again, again2) {
			t.Fatal("encoding is not stable")
		}
		s.Paths()
	})
}
