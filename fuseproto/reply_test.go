package fuseproto

import (
	"bytes"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestReplySplitOut serves one GETATTR into many out layouts, including ones
// that cut the header and the payload at every position: the concatenated
// reply must always be the same.
func TestReplySplitOut(t *testing.T) {
	s, _ := newTestServer(t)
	req := request(opGetattr, 3, make([]byte, 16))
	want := func() []byte {
		out := [][]byte{make([]byte, 512)}
		n := s.HandleRequest([][]byte{req}, out)
		return out[0][:n]
	}()
	if len(want) != outHeaderSize+attrOutSize {
		t.Fatalf("reply of %d bytes", len(want))
	}
	size := len(want) + 7 // some slack past the reply
	for cut := 0; cut <= size; cut++ {
		buf := make([]byte, size)
		out := [][]byte{buf[:cut], nil, buf[cut:]}
		n := s.HandleRequest([][]byte{req}, out)
		if got := bytes.Join(out, nil)[:n]; !bytes.Equal(got, want) {
			t.Fatalf("out cut at %d: reply differs", cut)
		}
	}
	out := splitEvery(make([]byte, size), 1)
	n := s.HandleRequest([][]byte{req}, out)
	if got := bytes.Join(out, nil)[:n]; !bytes.Equal(got, want) {
		t.Fatal("bytewise out: reply differs")
	}
}

func TestReplyHeader(t *testing.T) {
	s, fs := newTestServer(t)
	r := serve(t, s, request(opGetattr, 3, make([]byte, 16)), 512)
	if r.hdr != (fuse.OutHeader{Length: uint32(outHeaderSize + attrOutSize), Status: 0, Unique: testUnique}) {
		t.Errorf("header %+v", r.hdr)
	}
	fs.errno = syscall.ENOENT
	r = serve(t, s, request(opGetattr, 3, make([]byte, 16)), 512)
	if r.hdr != (fuse.OutHeader{Length: uint32(outHeaderSize), Status: -int32(syscall.ENOENT), Unique: testUnique}) {
		t.Errorf("error header %+v", r.hdr)
	}
}

// TestReadIntoSplitOut checks that READ hands the filesystem the out
// buffers themselves, after the header.
func TestReadIntoSplitOut(t *testing.T) {
	s, fs := newTestServer(t)
	fs.fileData = bytes.Repeat([]byte("abcdefgh"), 1024)
	hdr := make([]byte, outHeaderSize)
	pages := [][]byte{make([]byte, 4096), make([]byte, 4096)}
	out := append([][]byte{hdr}, pages...)
	n := s.HandleRequest([][]byte{request(opRead, 4, argBytes(&fuse.ReadIn{Size: 6000}))}, out)
	if n != outHeaderSize+6000 {
		t.Fatalf("reply of %d bytes", n)
	}
	if !bytes.Equal(pages[0], fs.fileData[:4096]) || !bytes.Equal(pages[1][:6000-4096], fs.fileData[4096:6000]) {
		t.Error("data not read into the out buffers")
	}
	if c := fs.onlyCall(t); c.Size != 6000 {
		t.Errorf("dst of %d bytes", c.Size)
	}
}

// TestWriteWithoutCopy checks that WRITE hands the filesystem sub-slices
// of the input.
func TestWriteWithoutCopy(t *testing.T) {
	data := bytes.Repeat([]byte{'w'}, 8192)
	req := request(opWrite, 4, argBytes(&fuse.WriteIn{Size: uint32(len(data))}))
	setLength(req, uint32(len(req)+len(data)))
	in := [][]byte{req[:inHeaderSize], req[inHeaderSize:], data[:4096], data[4096:]}
	var got [][]byte
	fs := &writeSpy{fakeFS: &fakeFS{quiet: true}, got: &got}
	s := NewServer(fs, ServerOptions{Logger: quietLogger()})
	s.SetSession(testSession())
	out := [][]byte{make([]byte, 64)}
	if n := s.HandleRequest(in, out); n != outHeaderSize+writeOutSize {
		t.Fatalf("reply of %d bytes", n)
	}
	if len(got) != 2 || &got[0][0] != &data[0] || &got[1][0] != &data[4096] || len(got[0])+len(got[1]) != len(data) {
		t.Error("WRITE data was copied or cut wrong")
	}
}

type writeSpy struct {
	*fakeFS
	got *[][]byte
}

func (w *writeSpy) Write(r *Request, in *fuse.WriteIn, src [][]byte) (uint32, syscall.Errno) {
	*w.got = append([][]byte(nil), src...)
	return in.Size, 0
}

func TestFilesystemContractViolations(t *testing.T) {
	s, _ := newTestServer(t)
	s.fs = &liarFS{fakeFS: &fakeFS{quiet: true}}
	for _, req := range [][]byte{
		request(opRead, 4, argBytes(&fuse.ReadIn{Size: 100})),
		request(opWrite, 4, argBytes(&fuse.WriteIn{Size: 3}), []byte("abc")),
		request(opReadlink, 4),
		request(opGetxattr, 4, argBytes(&fuse.GetXAttrIn{Size: 10}), cstr("user.x")),
		request(opListxattr, 4, argBytes(&fuse.GetXAttrIn{Size: 0})),
		request(opCopyFileRange, 4, argBytes(&fuse.CopyFileRangeIn{Len: 5})),
	} {
		if r := serve(t, s, req, 4096); r.errno() != syscall.EIO {
			t.Errorf("%s: errno %v, want EIO", lookupOp(uint32(req[4])).name, r.errno())
		}
	}
}

// liarFS reports more bytes than it could have produced.
type liarFS struct{ *fakeFS }

func (l *liarFS) Read(*Request, *fuse.ReadIn, [][]byte) (int, syscall.Errno) { return 101, 0 }
func (l *liarFS) Write(*Request, *fuse.WriteIn, [][]byte) (uint32, syscall.Errno) {
	return 4, 0
}
func (l *liarFS) Readlink(_ *Request, dst []byte) (int, syscall.Errno) { return len(dst) + 1, 0 }
func (l *liarFS) GetXAttr(_ *Request, _ string, dst []byte) (int, syscall.Errno) {
	return len(dst) + 1, 0
}
func (l *liarFS) ListXAttr(*Request, []byte) (int, syscall.Errno) { return -1, 0 }
func (l *liarFS) CopyFileRange(*Request, *fuse.CopyFileRangeIn) (uint32, syscall.Errno) {
	return 6, 0
}
