package fuseproto

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// fakeCall is one FileSystem call as the fake recorded it.
type fakeCall struct {
	Op     string
	Header fuse.InHeader
	Node   NodeID // parent or target node the request layer passed
	Names  []string
	In     any    // copy of the decoded argument structure, if any
	Data   []byte // WRITE data or SETXATTR value
	Plus   bool   // READDIRPLUS
	Size   int    // len of the dst handed to Read/Readlink/GetXAttr/ListXAttr
}

// fakeFS is a FileSystem that records every call and answers with canned
// data. With quiet set it records nothing, so benchmarks measure the request
// layer alone.
type fakeFS struct {
	quiet bool

	mu    sync.Mutex
	calls []fakeCall

	errno      syscall.Errno // returned by every method that returns one
	initWant   uint64
	initHook   func(*fuse.InitOut)
	destroyed  int
	fileData   []byte   // what Read returns
	linkTarget string   // what Readlink returns
	xattr      []byte   // what GetXAttr and ListXAttr return
	dirNames   []string // what ReadDir lists
	panicOn    string   // method that panics
}

func (f *fakeFS) record(c fakeCall) {
	if f.quiet {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if c.Op == f.panicOn {
		panic("fake panic in " + c.Op)
	}
}

func (f *fakeFS) rec(op string, r *Request, node NodeID, in any, names ...string) {
	if f.quiet {
		return
	}
	c := fakeCall{Op: op, Node: node, In: in, Names: names}
	if r != nil {
		c.Header = r.Header
	}
	f.record(c)
}

// lastCall returns the only call recorded, failing the test otherwise.
func (f *fakeFS) onlyCall(t *testing.T) fakeCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 1 {
		t.Fatalf("got %d calls, want 1: %+v", len(f.calls), f.calls)
	}
	return f.calls[0]
}

func (f *fakeFS) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func fillEntry(out *fuse.EntryOut, node uint64) {
	out.NodeId = node
	out.Generation = 1
	out.Ino = node
	out.Mode = syscall.S_IFREG | 0o644
	out.Nlink = 1
}

func (f *fakeFS) Init(kernelFlags uint64, out *fuse.InitOut) (uint64, syscall.Errno) {
	f.record(fakeCall{Op: "Init", In: *out})
	if f.initHook != nil {
		f.initHook(out)
	}
	return f.initWant, f.errno
}

func (f *fakeFS) Capabilities() uint64 { return f.initWant }

func (f *fakeFS) Destroy() {
	f.record(fakeCall{Op: "Destroy"})
	f.mu.Lock()
	f.destroyed++
	f.mu.Unlock()
}

func (f *fakeFS) Lookup(r *Request, parent NodeID, name string, out *fuse.EntryOut) syscall.Errno {
	f.rec("Lookup", r, parent, nil, name)
	fillEntry(out, 7)
	return f.errno
}

func (f *fakeFS) Forget(node NodeID, nlookup uint64) {
	f.record(fakeCall{Op: "Forget", Node: node, In: nlookup})
}

func (f *fakeFS) GetAttr(r *Request, in *fuse.GetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f.rec("GetAttr", r, r.Node(), *in)
	out.Ino = uint64(r.Node())
	out.Mode = syscall.S_IFDIR | 0o755
	out.AttrValid = 1
	return f.errno
}

func (f *fakeFS) SetAttr(r *Request, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f.rec("SetAttr", r, r.Node(), *in)
	out.Size = in.Size
	return f.errno
}

func (f *fakeFS) Readlink(r *Request, dst []byte) (int, syscall.Errno) {
	if !f.quiet {
		f.record(fakeCall{Op: "Readlink", Header: r.Header, Node: r.Node(), Size: len(dst)})
	}
	if f.errno != 0 {
		return 0, f.errno
	}
	if len(f.linkTarget) > len(dst) {
		return 0, syscall.ENAMETOOLONG
	}
	return copy(dst, f.linkTarget), 0
}

func (f *fakeFS) Symlink(r *Request, parent NodeID, name, target string, out *fuse.EntryOut) syscall.Errno {
	f.rec("Symlink", r, parent, nil, name, target)
	fillEntry(out, 8)
	return f.errno
}

func (f *fakeFS) Mknod(r *Request, in *fuse.MknodIn, name string, out *fuse.EntryOut) syscall.Errno {
	f.rec("Mknod", r, r.Node(), *in, name)
	fillEntry(out, 9)
	return f.errno
}

func (f *fakeFS) Mkdir(r *Request, in *fuse.MkdirIn, name string, out *fuse.EntryOut) syscall.Errno {
	f.rec("Mkdir", r, r.Node(), *in, name)
	fillEntry(out, 10)
	return f.errno
}

func (f *fakeFS) Unlink(r *Request, parent NodeID, name string) syscall.Errno {
	f.rec("Unlink", r, parent, nil, name)
	return f.errno
}

func (f *fakeFS) Rmdir(r *Request, parent NodeID, name string) syscall.Errno {
	f.rec("Rmdir", r, parent, nil, name)
	return f.errno
}

func (f *fakeFS) Rename(r *Request, in *fuse.RenameIn, oldName, newName string) syscall.Errno {
	f.rec("Rename", r, r.Node(), *in, oldName, newName)
	return f.errno
}

func (f *fakeFS) Link(r *Request, in *fuse.LinkIn, newName string, out *fuse.EntryOut) syscall.Errno {
	f.rec("Link", r, r.Node(), *in, newName)
	fillEntry(out, in.Oldnodeid)
	return f.errno
}

func (f *fakeFS) Open(r *Request, in *fuse.OpenIn, out *fuse.OpenOut) syscall.Errno {
	f.rec("Open", r, r.Node(), *in)
	out.Fh = 99
	return f.errno
}

func (f *fakeFS) Create(r *Request, in *fuse.CreateIn, name string, out *fuse.CreateOut) syscall.Errno {
	f.rec("Create", r, r.Node(), *in, name)
	fillEntry(&out.EntryOut, 11)
	out.Fh = 100
	return f.errno
}

func (f *fakeFS) Tmpfile(r *Request, in *fuse.CreateIn, out *fuse.CreateOut) syscall.Errno {
	f.rec("Tmpfile", r, r.Node(), *in)
	fillEntry(&out.EntryOut, 12)
	out.Fh = 101
	return f.errno
}

// Read serves fileData from in.Offset, filling dst segment by segment.
func (f *fakeFS) Read(r *Request, in *fuse.ReadIn, dst [][]byte) (int, syscall.Errno) {
	if !f.quiet {
		f.record(fakeCall{Op: "Read", Header: r.Header, Node: r.Node(), In: *in, Size: totalLen(dst)})
	}
	if f.errno != 0 {
		return 0, f.errno
	}
	src := f.fileData
	if in.Offset >= uint64(len(src)) {
		return 0, 0
	}
	src = src[in.Offset:]
	n := 0
	for _, d := range dst {
		k := copy(d, src[n:])
		n += k
		if k < len(d) {
			break
		}
	}
	return n, 0
}

func (f *fakeFS) Write(r *Request, in *fuse.WriteIn, src [][]byte) (uint32, syscall.Errno) {
	if !f.quiet {
		f.record(fakeCall{Op: "Write", Header: r.Header, Node: r.Node(), In: *in, Data: bytes.Join(src, nil)})
	}
	if f.errno != 0 {
		return 0, f.errno
	}
	return uint32(totalLen(src)), 0
}

func (f *fakeFS) StatFs(r *Request, out *fuse.StatfsOut) syscall.Errno {
	f.rec("StatFs", r, r.Node(), nil)
	out.Bsize = 4096
	out.NameLen = NameMax
	return f.errno
}

func (f *fakeFS) Release(r *Request, in *fuse.ReleaseIn) { f.rec("Release", r, r.Node(), *in) }

func (f *fakeFS) Flush(r *Request, in *fuse.FlushIn) syscall.Errno {
	f.rec("Flush", r, r.Node(), *in)
	return f.errno
}

func (f *fakeFS) Fsync(r *Request, in *fuse.FsyncIn) syscall.Errno {
	f.rec("Fsync", r, r.Node(), *in)
	return f.errno
}

func (f *fakeFS) Fallocate(r *Request, in *fuse.FallocateIn) syscall.Errno {
	f.rec("Fallocate", r, r.Node(), *in)
	return f.errno
}

func (f *fakeFS) Lseek(r *Request, in *fuse.LseekIn, out *fuse.LseekOut) syscall.Errno {
	f.rec("Lseek", r, r.Node(), *in)
	out.Offset = in.Offset + 1
	return f.errno
}

func (f *fakeFS) CopyFileRange(r *Request, in *fuse.CopyFileRangeIn) (uint32, syscall.Errno) {
	f.rec("CopyFileRange", r, r.Node(), *in)
	return uint32(min(in.Len, 1<<20)), f.errno
}

func (f *fakeFS) OpenDir(r *Request, in *fuse.OpenIn, out *fuse.OpenOut) syscall.Errno {
	f.rec("OpenDir", r, r.Node(), *in)
	out.Fh = 200
	return f.errno
}

// ReadDir lists dirNames from the cookie in.Offset, an index.
func (f *fakeFS) ReadDir(r *Request, in *fuse.ReadIn, plus bool, w *DirWriter) syscall.Errno {
	if !f.quiet {
		f.record(fakeCall{Op: "ReadDir", Header: r.Header, Node: r.Node(), In: *in, Plus: plus})
	}
	if f.errno != 0 {
		return f.errno
	}
	for i := int(min(in.Offset, uint64(len(f.dirNames)))); i < len(f.dirNames); i++ {
		name := f.dirNames[i]
		ino := uint64(1000 + i)
		if plus {
			if !w.FitsPlus(len(name)) {
				break
			}
			var e fuse.EntryOut
			fillEntry(&e, ino)
			if !w.AddPlus(name, &e, uint64(i+1)) {
				panic("FitsPlus said it fits")
			}
			continue
		}
		if !w.Add(name, ino, syscall.S_IFREG, uint64(i+1)) {
			break
		}
	}
	return 0
}

func (f *fakeFS) ReleaseDir(r *Request, in *fuse.ReleaseIn) { f.rec("ReleaseDir", r, r.Node(), *in) }

func (f *fakeFS) FsyncDir(r *Request, in *fuse.FsyncIn) syscall.Errno {
	f.rec("FsyncDir", r, r.Node(), *in)
	return f.errno
}

func (f *fakeFS) Access(r *Request, in *fuse.AccessIn) syscall.Errno {
	f.rec("Access", r, r.Node(), *in)
	return f.errno
}

func (f *fakeFS) xattrData(dst []byte) (int, syscall.Errno) {
	if f.errno != 0 {
		return 0, f.errno
	}
	if len(dst) == 0 {
		return len(f.xattr), 0
	}
	if len(f.xattr) > len(dst) {
		return 0, syscall.ERANGE
	}
	return copy(dst, f.xattr), 0
}

func (f *fakeFS) GetXAttr(r *Request, name string, dst []byte) (int, syscall.Errno) {
	if !f.quiet {
		f.record(fakeCall{Op: "GetXAttr", Header: r.Header, Node: r.Node(), Names: []string{name}, Size: len(dst)})
	}
	return f.xattrData(dst)
}

func (f *fakeFS) ListXAttr(r *Request, dst []byte) (int, syscall.Errno) {
	if !f.quiet {
		f.record(fakeCall{Op: "ListXAttr", Header: r.Header, Node: r.Node(), Size: len(dst)})
	}
	return f.xattrData(dst)
}

func (f *fakeFS) SetXAttr(r *Request, in *fuse.SetXAttrIn, name string, value []byte) syscall.Errno {
	if !f.quiet {
		f.record(fakeCall{Op: "SetXAttr", Header: r.Header, Node: r.Node(), In: *in, Names: []string{name}, Data: slices.Clone(value)})
	}
	return f.errno
}

func (f *fakeFS) RemoveXAttr(r *Request, name string) syscall.Errno {
	f.rec("RemoveXAttr", r, r.Node(), nil, name)
	return f.errno
}

func (f *fakeFS) SyncFS(r *Request) syscall.Errno {
	f.rec("SyncFS", r, r.Node(), nil)
	return f.errno
}

func totalLen(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// Request construction.

const (
	testUnique = 0x1234_5678_9abc
	testUID    = 1000
	testGID    = 100
	testPID    = 4242
)

// cstr is s with its terminating NUL.
func cstr(s string) []byte { return append([]byte(s), 0) }

// argBytes returns the wire arguments of *v, a go-fuse *In structure: the
// structure without its header.
func argBytes[T any](v *T) []byte { return slices.Clone(asBytes(v)[inHeaderSize:]) }

// request builds a complete request with a consistent Length.
func request(op opcode, node uint64, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	h := fuse.InHeader{
		Length: uint32(inHeaderSize + len(body)),
		Opcode: uint32(op),
		Unique: testUnique,
		NodeId: node,
		Caller: fuse.Caller{Owner: fuse.Owner{Uid: testUID, Gid: testGID}, Pid: testPID},
	}
	return append(slices.Clone(asBytes(&h)), body...)
}

// setLength overwrites the header's length field of req.
func setLength(req []byte, n uint32) []byte {
	binary.NativeEndian.PutUint32(req[0:], n)
	return req
}

// splitEvery cuts b into pieces of n bytes (the last may be shorter).
func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// reply is a decoded reply.
type reply struct {
	n       int
	hdr     fuse.OutHeader
	payload []byte
}

func (r reply) errno() syscall.Errno { return syscall.Errno(-r.hdr.Status) }

// parseReply decodes the n reply bytes in the concatenation of out.
func parseReply(t testing.TB, out [][]byte, n int) reply {
	t.Helper()
	flat := bytes.Join(out, nil)
	if n == 0 {
		return reply{}
	}
	if n < outHeaderSize || n > len(flat) {
		t.Fatalf("reply length %d with %d bytes of out buffer", n, len(flat))
	}
	var r reply
	r.n = n
	copy(asBytes(&r.hdr), flat)
	if int(r.hdr.Length) != n {
		t.Fatalf("header length %d, HandleRequest returned %d", r.hdr.Length, n)
	}
	r.payload = flat[outHeaderSize:n]
	return r
}

// decodeOut decodes a fixed-size reply payload into *v.
func decodeOut[T any](t testing.TB, payload []byte, v *T) *T {
	t.Helper()
	b := asBytes(v)
	if len(payload) != len(b) {
		t.Fatalf("payload %d bytes, want %d for %T", len(payload), len(b), *v)
	}
	copy(b, payload)
	return v
}

// Server construction.

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testSession is the session most tests run in: 7.41 with the extended
// setxattr form off.
func testSession() Session {
	return Session{Major: 7, Minor: MaxMinor, Flags: fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_MAX_PAGES,
		MaxWrite: 1 << 20, MaxReadahead: 1 << 17, MaxPages: 256, TimeGran: 1}
}

// newTestServer returns a server over a fresh fake with testSession
// installed.
func newTestServer(t testing.TB) (*Server, *fakeFS) {
	t.Helper()
	fs := &fakeFS{}
	s := NewServer(fs, ServerOptions{Logger: quietLogger()})
	s.SetSession(testSession())
	return s, fs
}

// serve runs one contiguous request with a contiguous reply buffer of the
// given size.
func serve(t testing.TB, s *Server, req []byte, outSize int) reply {
	t.Helper()
	out := [][]byte{make([]byte, outSize)}
	n := s.HandleRequest([][]byte{req}, out)
	return parseReply(t, out, n)
}
