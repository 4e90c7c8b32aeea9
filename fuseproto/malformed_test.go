package fuseproto

import (
	"bytes"
	"encoding/binary"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func TestMalformed(t *testing.T) {
	getattr := argBytes(&fuse.GetAttrIn{})
	mkdir := argBytes(&fuse.MkdirIn{Mode: 0o755})
	rename := argBytes(&fuse.RenameIn{Newdir: 1})[:8]
	long := strings.Repeat("n", NameMax+1)
	data := bytes.Repeat([]byte{'d'}, 100)
	writeIn := func(size uint32) []byte { return argBytes(&fuse.WriteIn{Size: size}) }
	setxattr := func(size uint32) []byte { return argBytes(&fuse.SetXAttrIn{Size: size})[:8] }
	batch := func(count uint32, records int) []byte {
		b := binary.NativeEndian.AppendUint32(nil, count)
		return append(b, make([]byte, 4+records*forgetOneSize)...)
	}
	none := func(t *testing.T, fs *fakeFS, r reply) { wantNoCall(t, fs, r) }

	cases := []requestCase{
		{name: "length too large", req: setLength(request(opGetattr, 1, getattr), 100), errno: syscall.EINVAL, check: none},
		{name: "length too small", req: setLength(request(opGetattr, 1, getattr), 50), errno: syscall.EINVAL, check: none},
		{name: "length below header", req: setLength(request(opGetattr, 1, getattr), 8), errno: syscall.EINVAL, check: none},
		{name: "length of FORGET wrong", req: setLength(request(opForget, 1, make([]byte, 8)), 40), noReply: true, check: none},
		{
			name: "extensions larger than request", errno: syscall.EINVAL, check: none,
			req: func() []byte {
				r := request(opGetattr, 1, getattr)
				binary.NativeEndian.PutUint16(r[36:], 3) // 24 bytes of extensions in 16 of arguments
				return r
			}(),
		},
		{
			name: "extensions eat the arguments", errno: syscall.EINVAL, check: none,
			req: func() []byte {
				r := request(opGetattr, 1, getattr)
				binary.NativeEndian.PutUint16(r[36:], 1)
				return r
			}(),
		},
		{name: "truncated GETATTR", req: request(opGetattr, 1, getattr[:15]), errno: syscall.EINVAL, check: none},
		{name: "truncated SETATTR", req: request(opSetattr, 1, make([]byte, 87)), errno: syscall.EINVAL, check: none},
		{name: "truncated READ", req: request(opRead, 1, make([]byte, 39)), errno: syscall.EINVAL, check: none},
		{name: "truncated INIT", req: request(opInit, 0, make([]byte, 15)), errno: syscall.EINVAL, check: none},
		{name: "truncated FORGET", req: request(opForget, 1, make([]byte, 7)), noReply: true, check: none},
		{name: "missing NUL", req: request(opLookup, 1, []byte("foo")), errno: syscall.EINVAL, check: none},
		{name: "missing second NUL", req: request(opSymlink, 1, cstr("ln"), []byte("target")), errno: syscall.EINVAL, check: none},
		{name: "missing second name", req: request(opRename, 1, rename, cstr("old")), errno: syscall.EINVAL, check: none},
		{name: "no name at all", req: request(opUnlink, 1), errno: syscall.EINVAL, check: none},
		{name: "empty name", req: request(opLookup, 1, cstr("")), errno: syscall.EINVAL, check: none},
		{name: "empty new name", req: request(opRename, 1, rename, cstr("old"), cstr("")), errno: syscall.EINVAL, check: none},
		{name: "name with slash", req: request(opLookup, 1, cstr("a/b")), errno: syscall.EINVAL, check: none},
		{name: "slash name", req: request(opCreate, 1, argBytes(&fuse.CreateIn{}), cstr("/")), errno: syscall.EINVAL, check: none},
		{name: "dot for MKDIR", req: request(opMkdir, 1, mkdir, cstr(".")), errno: syscall.EINVAL, check: none},
		{name: "dotdot for MKDIR", req: request(opMkdir, 1, mkdir, cstr("..")), errno: syscall.EINVAL, check: none},
		{name: "dot for MKNOD", req: request(opMknod, 1, argBytes(&fuse.MknodIn{}), cstr(".")), errno: syscall.EINVAL, check: none},
		{name: "dot for CREATE", req: request(opCreate, 1, argBytes(&fuse.CreateIn{}), cstr(".")), errno: syscall.EINVAL, check: none},
		{name: "dot for SYMLINK", req: request(opSymlink, 1, cstr("."), cstr("t")), errno: syscall.EINVAL, check: none},
		{name: "dotdot for LINK", req: request(opLink, 1, argBytes(&fuse.LinkIn{Oldnodeid: 2}), cstr("..")), errno: syscall.EINVAL, check: none},
		{name: "dotdot for UNLINK", req: request(opUnlink, 1, cstr("..")), errno: syscall.EINVAL, check: none},
		{name: "dot for RMDIR", req: request(opRmdir, 1, cstr(".")), errno: syscall.EINVAL, check: none},
		{name: "dot as RENAME source", req: request(opRename, 1, rename, cstr("."), cstr("x")), errno: syscall.EINVAL, check: none},
		{name: "dotdot as RENAME2 target", req: request(opRename2, 1, argBytes(&fuse.RenameIn{}), cstr("x"), cstr("..")), errno: syscall.EINVAL, check: none},
		{name: "oversize name", req: request(opLookup, 1, cstr(long)), errno: syscall.ENAMETOOLONG, check: none},
		{name: "oversize unterminated name", req: request(opMkdir, 1, mkdir, []byte(long+long)), errno: syscall.ENAMETOOLONG, check: none},
		{name: "oversize symlink target", req: request(opSymlink, 1, cstr("ln"), cstr(strings.Repeat("t", pathMax))), errno: syscall.ENAMETOOLONG, check: none},
		{name: "empty symlink target", req: request(opSymlink, 1, cstr("ln"), cstr("")), errno: syscall.EINVAL, check: none},
		{name: "oversize xattr name", req: request(opGetxattr, 1, argBytes(&fuse.GetXAttrIn{Size: 10}), cstr("user."+long)), errno: syscall.ERANGE, check: none},
		{name: "empty xattr name", req: request(opRemovexattr, 1, cstr("")), errno: syscall.ERANGE, check: none},
		{name: "WRITE size above data", req: request(opWrite, 1, writeIn(101), data), errno: syscall.EINVAL, check: none},
		{name: "WRITE size below data", req: request(opWrite, 1, writeIn(99), data), errno: syscall.EINVAL, check: none},
		{name: "WRITE huge size", req: request(opWrite, 1, writeIn(0xffffffff), data), errno: syscall.EINVAL, check: none},
		{
			name: "WRITE above max_write", req: request(opWrite, 1, writeIn(100), data), errno: syscall.EINVAL, check: none,
			sess: func(s *Session) { s.MaxWrite = 99 },
		},
		{name: "BATCH_FORGET count overflow", req: request(opBatchForget, 0, batch(0xffffffff, 2)), noReply: true, check: none},
		{name: "BATCH_FORGET count above records", req: request(opBatchForget, 0, batch(3, 2)), noReply: true, check: none},
		{name: "BATCH_FORGET count below records", req: request(opBatchForget, 0, batch(1, 2)), noReply: true, check: none},
		{name: "BATCH_FORGET partial record", req: request(opBatchForget, 0, batch(1, 1)[:8+15]), noReply: true, check: none},
		{name: "SETXATTR huge size", req: request(opSetxattr, 1, setxattr(0xffffffff), cstr("user.x"), data), errno: syscall.E2BIG, check: none},
		{name: "SETXATTR over XATTR_SIZE_MAX", req: request(opSetxattr, 1, setxattr(xattrSizeMax+1), cstr("user.x"), make([]byte, xattrSizeMax+1)), errno: syscall.E2BIG, check: none},
		{name: "SETXATTR size above value", req: request(opSetxattr, 1, setxattr(101), cstr("user.x"), data), errno: syscall.EINVAL, check: none},
		{name: "SETXATTR size below value", req: request(opSetxattr, 1, setxattr(99), cstr("user.x"), data), errno: syscall.EINVAL, check: none},
		{
			// With the extended form negotiated, a compat-sized
			// request is short: its name would be read as arguments.
			name: "SETXATTR compat form in extended session", errno: syscall.EINVAL, check: none,
			req:  request(opSetxattr, 1, setxattr(1), cstr("u"), []byte{'v'}),
			sess: func(s *Session) { s.Flags |= fuse.CAP_SETXATTR_EXT },
		},
		{name: "LOOKUP reply does not fit", req: request(opLookup, 1, cstr("x")), outSize: outHeaderSize + entryOutSize - 1, errno: syscall.EIO, check: none},
		{name: "CREATE reply does not fit", req: request(opCreate, 1, argBytes(&fuse.CreateIn{}), cstr("x")), outSize: outHeaderSize + entryOutSize, errno: syscall.EIO, check: none},
		{name: "OPEN reply does not fit", req: request(opOpen, 1, argBytes(&fuse.OpenIn{})), outSize: outHeaderSize, errno: syscall.EIO, check: none},
		{
			name: "GETXATTR size reply does not fit", req: request(opGetxattr, 1, argBytes(&fuse.GetXAttrIn{}), cstr("user.x")),
			outSize: outHeaderSize + 7, errno: syscall.EIO,
		},
		{
			name: "READDIR reply bounded by out", req: request(opReaddir, 1, argBytes(&fuse.ReadIn{Size: 4096})),
			outSize: outHeaderSize + 40,
			fs:      func(fs *fakeFS) { fs.dirNames = []string{"a", "b", "c"} },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if got := fs.onlyCall(t).In.(fuse.ReadIn).Size; got != 40 {
					t.Errorf("READDIR size %d, want it capped at 40", got)
				}
				if len(r.payload) != 32 {
					t.Errorf("payload %d bytes, want one 32-byte entry", len(r.payload))
				}
			},
		},
		{
			name: "READ huge size", req: request(opRead, 1, argBytes(&fuse.ReadIn{Size: 0xffffffff})),
			fs: func(fs *fakeFS) { fs.fileData = data },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if got := fs.onlyCall(t).In.(fuse.ReadIn).Size; int(got) != plentyOut-outHeaderSize {
					t.Errorf("READ size %d, want it capped at the reply space", got)
				}
				if !bytes.Equal(r.payload, data) {
					t.Errorf("read %d bytes", len(r.payload))
				}
			},
		},
		{name: "filesystem errno out of range", req: request(opGetattr, 1, getattr), errno: syscall.EIO, fs: func(fs *fakeFS) { fs.errno = 512 }},
		{name: "filesystem panics", req: request(opGetattr, 1, getattr), errno: syscall.EIO, fs: func(fs *fakeFS) { fs.panicOn = "GetAttr" }},
		{name: "filesystem panics on FORGET", req: request(opForget, 1, make([]byte, 8)), noReply: true, fs: func(fs *fakeFS) { fs.panicOn = "Forget" }},
	}
	runCases(t, cases)
}

func TestShortRequests(t *testing.T) {
	s, fs := newTestServer(t)
	req := request(opGetattr, 1, make([]byte, 16))
	for n := range inHeaderSize {
		out := [][]byte{make([]byte, 256)}
		for _, in := range [][][]byte{{req[:n]}, splitEvery(req[:max(n, 1)][:n], 1), nil, {nil, req[:n], nil}} {
			if got := s.HandleRequest(in, out); got != 0 {
				t.Fatalf("%d-byte request: reply of %d bytes", n, got)
			}
		}
	}
	if fs.callCount() != 0 {
		t.Errorf("filesystem called for short requests: %+v", fs.calls)
	}
}

func TestNoRoomForReply(t *testing.T) {
	s, fs := newTestServer(t)
	req := request(opLookup, 1, cstr("x"))
	for _, out := range [][][]byte{nil, {}, {make([]byte, 15)}, splitEvery(make([]byte, 15), 1)} {
		if n := s.HandleRequest([][]byte{req}, out); n != 0 {
			t.Errorf("reply of %d bytes into %d bytes", n, totalLen(out))
		}
	}
	if fs.callCount() != 0 {
		t.Errorf("filesystem called without room for the reply: %+v", fs.calls)
	}
}

func TestBeforeInit(t *testing.T) {
	fs := &fakeFS{}
	s := NewServer(fs, ServerOptions{Logger: quietLogger()})
	r := serve(t, s, request(opGetattr, 1, make([]byte, 16)), 256)
	if r.errno() != syscall.EIO {
		t.Errorf("GETATTR before INIT: errno %v, want EIO", r.errno())
	}
	if n := s.HandleRequest([][]byte{request(opForget, 1, make([]byte, 8))}, [][]byte{make([]byte, 256)}); n != 0 {
		t.Errorf("FORGET before INIT: reply of %d bytes", n)
	}
	if r := serve(t, s, request(99, 1), 256); r.errno() != syscall.EIO {
		t.Errorf("unknown opcode before INIT: errno %v, want EIO", r.errno())
	}
	if fs.callCount() != 0 {
		t.Errorf("filesystem called before INIT: %+v", fs.calls)
	}
}

// TestInputChangesUnderUs rewrites the request while the filesystem runs,
// as a guest sharing the memory could: what the filesystem already got must
// not change, and nothing may go wrong.
func TestInputChangesUnderUs(t *testing.T) {
	s, fs := newTestServer(t)
	req := request(opMkdir, 1, argBytes(&fuse.MkdirIn{Mode: 0o755}), cstr("dir"))
	var seen string
	hook := &mutatingFS{fakeFS: fs, mutate: func() {
		for i := range req {
			req[i] = 0xff
		}
	}, seen: &seen}
	s.fs = hook
	r := serve(t, s, req, 4096)
	if r.errno() != 0 {
		t.Fatalf("errno %v", r.errno())
	}
	if seen != "dir" {
		t.Errorf("name after the guest rewrote it: %q", seen)
	}
}

type mutatingFS struct {
	*fakeFS
	mutate func()
	seen   *string
}

func (m *mutatingFS) Mkdir(r *Request, in *fuse.MkdirIn, name string, out *fuse.EntryOut) syscall.Errno {
	m.mutate()
	*m.seen = name
	if in.Mode != 0o755 || r.Header.Opcode != uint32(opMkdir) {
		return syscall.EBADMSG
	}
	return m.fakeFS.Mkdir(r, in, name, out)
}
