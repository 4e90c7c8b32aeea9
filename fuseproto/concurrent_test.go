package fuseproto

import (
	"bytes"
	"sync"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestConcurrentRequests serves many requests at once from pooled state;
// with -race it checks that no two requests share scratch memory.
func TestConcurrentRequests(t *testing.T) {
	fs := &fakeFS{quiet: true, fileData: bytes.Repeat([]byte("0123456789abcdef"), 1024), dirNames: []string{"a", "b"}}
	s := NewServer(fs, ServerOptions{Logger: quietLogger()})
	s.SetSession(testSession())
	data := bytes.Repeat([]byte{'x'}, 3000)
	reqs := []struct {
		req  []byte
		want int
	}{
		{request(opGetattr, 3, make([]byte, 16)), outHeaderSize + attrOutSize},
		{request(opLookup, 1, cstr("name")), outHeaderSize + entryOutSize},
		{request(opRead, 4, argBytes(&fuse.ReadIn{Size: 1000})), outHeaderSize + 1000},
		{request(opWrite, 4, argBytes(&fuse.WriteIn{Size: uint32(len(data))}), data), outHeaderSize + writeOutSize},
		{request(opReaddir, 1, argBytes(&fuse.ReadIn{Size: 4096})), outHeaderSize + 64},
		{request(opGetxattr, 1, argBytes(&fuse.GetXAttrIn{Size: 10}), cstr("user.x")), outHeaderSize},
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				rc := reqs[(g+i)%len(reqs)]
				out := [][]byte{make([]byte, 8192)}
				n := s.HandleRequest(splitEvery(rc.req, 7+g), out)
				if n != rc.want {
					t.Errorf("opcode %d: reply of %d bytes, want %d", rc.req[4], n, rc.want)
					return
				}
				var hdr fuse.OutHeader
				copy(asBytes(&hdr), out[0])
				if hdr.Unique != testUnique || (hdr.Status != 0 && syscall.Errno(-hdr.Status) != syscall.ERANGE) {
					t.Errorf("header %+v", hdr)
					return
				}
			}
		})
	}
	wg.Wait()
}
