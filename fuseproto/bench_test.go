package fuseproto

import (
	"bytes"
	"encoding/binary"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// benchFS is a trivial filesystem: it records nothing and does no I/O, so
// the benchmarks measure the request layer.
type benchFS struct{ fakeFS }

func (b *benchFS) GetAttr(r *Request, _ *fuse.GetAttrIn, out *fuse.AttrOut) syscall.Errno {
	out.Ino = uint64(r.Node())
	return 0
}

func (b *benchFS) Lookup(_ *Request, _ NodeID, _ string, out *fuse.EntryOut) syscall.Errno {
	fillEntry(out, 7)
	return 0
}

func (b *benchFS) Read(_ *Request, _ *fuse.ReadIn, dst [][]byte) (int, syscall.Errno) {
	return totalLen(dst), 0
}

func (b *benchFS) Write(_ *Request, in *fuse.WriteIn, _ [][]byte) (uint32, syscall.Errno) {
	return in.Size, 0
}

func newBenchServer(b *testing.B) *Server {
	b.Helper()
	s := NewServer(&benchFS{fakeFS{quiet: true}}, ServerOptions{Logger: quietLogger()})
	s.SetSession(testSession())
	return s
}

// benchServe serves req from in over and over into out and checks the reply
// length once.
func benchServe(b *testing.B, in, out [][]byte, wantLen int) {
	s := newBenchServer(b)
	if n := s.HandleRequest(in, out); n != wantLen {
		b.Fatalf("reply of %d bytes, want %d", n, wantLen)
	}
	b.ReportAllocs()
	b.SetBytes(int64(totalLen(in)))
	b.ResetTimer()
	for b.Loop() {
		s.HandleRequest(in, out)
	}
}

func BenchmarkGetAttr(b *testing.B) {
	req := request(opGetattr, 3, make([]byte, 16))
	b.Run("devfuse", func(b *testing.B) {
		benchServe(b, [][]byte{req}, [][]byte{make([]byte, 4096)}, outHeaderSize+attrOutSize)
	})
	b.Run("virtio", func(b *testing.B) {
		benchServe(b, [][]byte{req[:inHeaderSize], req[inHeaderSize:]},
			[][]byte{make([]byte, outHeaderSize), make([]byte, attrOutSize)}, outHeaderSize+attrOutSize)
	})
}

func BenchmarkLookup(b *testing.B) {
	req := request(opLookup, 1, cstr("some-file.txt"))
	benchServe(b, [][]byte{req}, [][]byte{make([]byte, 4096)}, outHeaderSize+entryOutSize)
}

func BenchmarkRead4K(b *testing.B) {
	req := request(opRead, 4, argBytes(&fuse.ReadIn{Fh: 4, Size: 4096}))
	b.Run("devfuse", func(b *testing.B) {
		benchServe(b, [][]byte{req}, [][]byte{make([]byte, outHeaderSize+4096)}, outHeaderSize+4096)
	})
	b.Run("virtio", func(b *testing.B) {
		benchServe(b, [][]byte{req[:inHeaderSize], req[inHeaderSize:]},
			[][]byte{make([]byte, outHeaderSize), make([]byte, 4096)}, outHeaderSize+4096)
	})
}

func BenchmarkWrite4K(b *testing.B) {
	data := bytes.Repeat([]byte{'w'}, 4096)
	req := request(opWrite, 4, argBytes(&fuse.WriteIn{Fh: 4, Size: 4096}), data)
	b.Run("devfuse", func(b *testing.B) {
		benchServe(b, [][]byte{req}, [][]byte{make([]byte, 4096)}, outHeaderSize+writeOutSize)
	})
	b.Run("virtio", func(b *testing.B) {
		benchServe(b, [][]byte{req[:inHeaderSize], req[inHeaderSize : inHeaderSize+40], req[inHeaderSize+40:]},
			[][]byte{make([]byte, outHeaderSize), make([]byte, writeOutSize)}, outHeaderSize+writeOutSize)
	})
}

// BenchmarkDecodeStruct compares the two ways of decoding a fixed structure
// that the design considered: the bounded copy decodeIn does, and
// encoding/binary.
func BenchmarkDecodeStruct(b *testing.B) {
	req := request(opRead, 4, argBytes(&fuse.ReadIn{Fh: 4, Size: 4096}))
	b.Run("copy", func(b *testing.B) {
		c := &call{in: newInView([][]byte{req}), argSize: argSize[fuse.ReadIn]()}
		c.in.readAt(asBytes(&c.req.Header), 0)
		b.ReportAllocs()
		for b.Loop() {
			decodeArgs(c, &c.v.readIn)
		}
	})
	b.Run("encoding-binary", func(b *testing.B) {
		var in fuse.ReadIn
		b.ReportAllocs()
		for b.Loop() {
			if _, err := binary.Decode(req, binary.NativeEndian, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
