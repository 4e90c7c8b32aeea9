package fuseproto

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// requestCase is one request and what serving it must do.
type requestCase struct {
	name    string
	req     []byte
	outSize int            // reply space; 0 means plenty
	sess    func(*Session) // adjusts the session the request runs in
	fs      func(*fakeFS)  // configures the fake
	noReply bool           // no reply at all is expected
	errno   syscall.Errno
	// check inspects the fake and the reply of a successful request.
	check func(t *testing.T, fs *fakeFS, r reply)
}

// layout is one way a transport can scatter a request and its reply.
type layout struct {
	name string
	in   func(req []byte) [][]byte
	out  func(size int) [][]byte
}

var layouts = []layout{
	{
		name: "contiguous", // /dev/fuse
		in:   func(b []byte) [][]byte { return [][]byte{b} },
		out:  func(n int) [][]byte { return [][]byte{make([]byte, n)} },
	},
	{
		// virtio-fs: the header in one descriptor, the fixed arguments
		// in the next, the rest (names, data) in page-sized ones; the
		// out header in its own descriptor, the payload in pages.
		name: "virtio",
		in: func(b []byte) [][]byte {
			bufs := [][]byte{b[:min(len(b), inHeaderSize)]}
			b = b[len(bufs[0]):]
			if len(b) == 0 {
				return bufs
			}
			op := lookupOp(binary.NativeEndian.Uint32(bufs[0][4:]))
			if op != nil && op.argSize > 0 {
				k := min(len(b), op.argSize)
				bufs = append(bufs, b[:k])
				b = b[k:]
			}
			if len(b) == 0 {
				return bufs
			}
			return append(bufs, splitEvery(b, pageSize)...)
		},
		out: func(n int) [][]byte {
			b := make([]byte, n)
			return append([][]byte{b[:outHeaderSize]}, splitEvery(b[outHeaderSize:], pageSize)...)
		},
	},
	{
		name: "bytewise",
		in:   func(b []byte) [][]byte { return splitEvery(b, 1) },
		out: func(n int) [][]byte {
			// Byte-sized reply buffers too, but cap the count: a
			// 64 KiB reply in 1-byte buffers is slow to no purpose.
			if n > 8192 {
				b := make([]byte, n)
				return append(splitEvery(b[:4096], 1), b[4096:])
			}
			return splitEvery(make([]byte, n), 1)
		},
	},
}

const plentyOut = xattrSizeMax + pageSize

// runCases serves every case in every layout, each on a fresh server.
func runCases(t *testing.T, cases []requestCase) {
	t.Helper()
	for _, tc := range cases {
		for _, l := range layouts {
			t.Run(tc.name+"/"+l.name, func(t *testing.T) {
				fs := &fakeFS{}
				if tc.fs != nil {
					tc.fs(fs)
				}
				s := NewServer(fs, ServerOptions{Logger: quietLogger()})
				sess := testSession()
				if tc.sess != nil {
					tc.sess(&sess)
				}
				s.SetSession(sess)
				outSize := tc.outSize
				if outSize == 0 {
					outSize = plentyOut
				}
				req := slices.Clone(tc.req)
				out := l.out(outSize)
				n := s.HandleRequest(l.in(req), out)
				if tc.noReply {
					if n != 0 {
						t.Fatalf("reply of %d bytes to a request without reply", n)
					}
				} else {
					r := parseReply(t, out, n)
					if r.hdr.Unique != testUnique {
						t.Errorf("unique %#x, want %#x", r.hdr.Unique, testUnique)
					}
					if r.errno() != tc.errno {
						t.Fatalf("errno %v (%d), want %v (%d)", r.errno(), r.errno(), tc.errno, tc.errno)
					}
					if tc.errno != 0 && r.n != outHeaderSize {
						t.Errorf("error reply of %d bytes", r.n)
					}
					if tc.check != nil {
						tc.check(t, fs, r)
					}
					return
				}
				if tc.check != nil {
					tc.check(t, fs, reply{})
				}
			})
		}
	}
}

// wantCall checks that the fake got exactly one call, of method op, on node,
// with the given names and the test header, and returns it.
func wantCall(t *testing.T, fs *fakeFS, op string, node NodeID, names ...string) fakeCall {
	t.Helper()
	c := fs.onlyCall(t)
	if c.Op != op {
		t.Fatalf("call %s, want %s", c.Op, op)
	}
	if c.Node != node {
		t.Errorf("%s on node %d, want %d", op, c.Node, node)
	}
	if !slices.Equal(c.Names, names) && !(len(c.Names) == 0 && len(names) == 0) {
		t.Errorf("%s names %q, want %q", op, c.Names, names)
	}
	if op != "Forget" && op != "Init" && op != "Destroy" {
		h := c.Header
		if h.Unique != testUnique || h.Uid != testUID || h.Gid != testGID || h.Pid != testPID {
			t.Errorf("%s header %+v lost the caller", op, h)
		}
	}
	return c
}

// wantNoCall checks that the filesystem was not called.
func wantNoCall(t *testing.T, fs *fakeFS, _ reply) {
	t.Helper()
	if n := fs.callCount(); n != 0 {
		t.Errorf("%d filesystem calls, want none: %+v", n, fs.calls)
	}
}

func wantEntry(t *testing.T, r reply, node uint64) {
	t.Helper()
	var e fuse.EntryOut
	decodeOut(t, r.payload, &e)
	if e.NodeId != node || e.Ino != node {
		t.Errorf("entry %+v, want node %d", e, node)
	}
}

func wantEmpty(t *testing.T, r reply) {
	t.Helper()
	if len(r.payload) != 0 {
		t.Errorf("payload of %d bytes, want none", len(r.payload))
	}
}

func wantIn[T comparable](t *testing.T, c fakeCall, want T) {
	t.Helper()
	got, ok := c.In.(T)
	if !ok {
		t.Fatalf("%s got %T, want %T", c.Op, c.In, want)
	}
	if got != want {
		t.Errorf("%s got\n%+v\nwant\n%+v", c.Op, got, want)
	}
}

// withHeader returns v with the header a test request carries, as the
// filesystem must see it.
func withHeader(op opcode, node uint64, length int) fuse.InHeader {
	return fuse.InHeader{
		Length: uint32(length), Opcode: uint32(op), Unique: testUnique, NodeId: node,
		Caller: fuse.Caller{Owner: fuse.Owner{Uid: testUID, Gid: testGID}, Pid: testPID},
	}
}

func TestDecodeValid(t *testing.T) {
	getattr := fuse.GetAttrIn{Flags_: fuse.FUSE_GETATTR_FH, Fh_: 9}
	setattr := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE | fuse.FATTR_MODE, Size: 12345, Mode: 0o600}}
	mknod := fuse.MknodIn{Mode: syscall.S_IFIFO | 0o644, Rdev: 3, Umask: 0o22}
	mkdir := fuse.MkdirIn{Mode: 0o755, Umask: 0o22}
	rename2 := fuse.RenameIn{Newdir: 6, Flags: 1 /* RENAME_NOREPLACE */}
	link := fuse.LinkIn{Oldnodeid: 33}
	open := fuse.OpenIn{Flags: syscall.O_RDWR | syscall.O_TRUNC, Mode: fuse.OPEN_KILL_SUIDGID}
	create := fuse.CreateIn{Flags: syscall.O_RDWR | syscall.O_CREAT, Mode: 0o644, Umask: 0o22}
	read := fuse.ReadIn{Fh: 4, Offset: 10, Size: 4096}
	write := fuse.WriteIn{Fh: 4, Offset: 8192, Size: 5000, WriteFlags: fuse.WRITE_LOCKOWNER, LockOwner: 77}
	release := fuse.ReleaseIn{Fh: 4, Flags: syscall.O_RDWR, ReleaseFlags: fuse.RELEASE_FLUSH, LockOwner: 5}
	flush := fuse.FlushIn{Fh: 4, LockOwner: 5}
	fsync := fuse.FsyncIn{Fh: 4, FsyncFlags: 1}
	falloc := fuse.FallocateIn{Fh: 4, Offset: 100, Length: 200, Mode: 1}
	lseek := fuse.LseekIn{Fh: 4, Offset: 300, Whence: 3}
	cfr := fuse.CopyFileRangeIn{FhIn: 1, OffIn: 2, NodeIdOut: 3, FhOut: 4, OffOut: 5, Len: 6, Flags: 0}
	access := fuse.AccessIn{Mask: fuse.R_OK | fuse.W_OK}
	getxattr := func(size uint32) []byte { return argBytes(&fuse.GetXAttrIn{Size: size}) }
	setxattrExt := fuse.SetXAttrIn{Size: 5, Flags: 1, SetXAttrFlags: fuse.SETXATTR_ACL_KILL_SGID}
	data := bytes.Repeat([]byte("0123456789"), 500)
	long := strings.Repeat("n", NameMax)
	longTarget := strings.Repeat("t/", (pathMax-1)/2) + "t"

	batch := []byte{2, 0, 0, 0, 0, 0, 0, 0}
	for _, rec := range [][2]uint64{{20, 1}, {21, 1 << 40}} {
		batch = binary.NativeEndian.AppendUint64(batch, rec[0])
		batch = binary.NativeEndian.AppendUint64(batch, rec[1])
	}

	withExt := func(req []byte, ext []byte) []byte {
		req = append(req, ext...)
		setLength(req, uint32(len(req)))
		binary.NativeEndian.PutUint16(req[36:], uint16(len(ext)/8))
		return req
	}

	cases := []requestCase{
		{
			name: "LOOKUP", req: request(opLookup, 1, cstr("foo")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				wantCall(t, fs, "Lookup", 1, "foo")
				wantEntry(t, r, 7)
			},
		},
		{
			name: "LOOKUP dot", req: request(opLookup, 5, cstr(".")),
			check: func(t *testing.T, fs *fakeFS, r reply) { wantCall(t, fs, "Lookup", 5, ".") },
		},
		{
			name: "LOOKUP dotdot", req: request(opLookup, 5, cstr("..")),
			check: func(t *testing.T, fs *fakeFS, r reply) { wantCall(t, fs, "Lookup", 5, "..") },
		},
		{
			name: "LOOKUP longest name", req: request(opLookup, 1, cstr(long)),
			check: func(t *testing.T, fs *fakeFS, r reply) { wantCall(t, fs, "Lookup", 1, long) },
		},
		{
			name: "LOOKUP with extensions",
			req:  withExt(request(opLookup, 1, cstr("ext")), extRecord(extGroups, groupsBody(1000))),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				wantCall(t, fs, "Lookup", 1, "ext")
			},
		},
		{
			name:  "LOOKUP with malformed extensions",
			req:   withExt(request(opLookup, 1, cstr("ext")), bytes.Repeat([]byte{0xee}, 16)),
			errno: syscall.EINVAL,
		},
		{
			name: "LOOKUP error", req: request(opLookup, 1, cstr("missing")), errno: syscall.ENOENT,
			fs: func(fs *fakeFS) { fs.errno = syscall.ENOENT },
		},
		{
			name: "FORGET", req: request(opForget, 5, argBytes(&fuse.ForgetIn{Nlookup: 3})), noReply: true,
			check: func(t *testing.T, fs *fakeFS, _ reply) {
				c := wantCall(t, fs, "Forget", 5)
				if c.In != uint64(3) {
					t.Errorf("nlookup %v", c.In)
				}
			},
		},
		{
			name: "BATCH_FORGET", req: request(opBatchForget, 0, batch), noReply: true,
			check: func(t *testing.T, fs *fakeFS, _ reply) {
				want := []fakeCall{{Op: "Forget", Node: 20, In: uint64(1)}, {Op: "Forget", Node: 21, In: uint64(1 << 40)}}
				if !slices.EqualFunc(fs.calls, want, func(a, b fakeCall) bool {
					return a.Op == b.Op && a.Node == b.Node && a.In == b.In
				}) {
					t.Errorf("calls %+v, want %+v", fs.calls, want)
				}
			},
		},
		{
			name: "BATCH_FORGET empty", req: request(opBatchForget, 0, make([]byte, 8)), noReply: true,
			check: func(t *testing.T, fs *fakeFS, r reply) { wantNoCall(t, fs, r) },
		},
		{
			name: "GETATTR", req: request(opGetattr, 3, argBytes(&getattr)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "GetAttr", 3)
				want := getattr
				want.InHeader = withHeader(opGetattr, 3, inHeaderSize+16)
				wantIn(t, c, want)
				var out fuse.AttrOut
				decodeOut(t, r.payload, &out)
				if out.Ino != 3 || out.Mode != syscall.S_IFDIR|0o755 || out.AttrValid != 1 {
					t.Errorf("attr %+v", out)
				}
			},
		},
		{
			name: "SETATTR", req: request(opSetattr, 3, argBytes(&setattr)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "SetAttr", 3)
				want := setattr
				want.InHeader = withHeader(opSetattr, 3, inHeaderSize+88)
				wantIn(t, c, want)
				var out fuse.AttrOut
				if decodeOut(t, r.payload, &out).Size != 12345 {
					t.Errorf("attr %+v", out)
				}
			},
		},
		{
			name: "READLINK", req: request(opReadlink, 4),
			fs: func(fs *fakeFS) { fs.linkTarget = "../some/target" },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Readlink", 4)
				if c.Size != pathMax {
					t.Errorf("readlink buffer %d, want %d", c.Size, pathMax)
				}
				if string(r.payload) != "../some/target" {
					t.Errorf("target %q", r.payload)
				}
			},
		},
		{
			name: "READLINK bounded by reply space", req: request(opReadlink, 4), outSize: outHeaderSize + 100,
			fs: func(fs *fakeFS) { fs.linkTarget = strings.Repeat("x", 100) },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if c := wantCall(t, fs, "Readlink", 4); c.Size != 100 {
					t.Errorf("readlink buffer %d, want 100", c.Size)
				}
				if len(r.payload) != 100 {
					t.Errorf("target of %d bytes", len(r.payload))
				}
			},
		},
		{
			name: "SYMLINK", req: request(opSymlink, 2, cstr("ln"), cstr("../a/b")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				wantCall(t, fs, "Symlink", 2, "ln", "../a/b")
				wantEntry(t, r, 8)
			},
		},
		{
			name: "SYMLINK longest target", req: request(opSymlink, 2, cstr("ln"), cstr(longTarget)),
			check: func(t *testing.T, fs *fakeFS, r reply) { wantCall(t, fs, "Symlink", 2, "ln", longTarget) },
		},
		{
			name: "MKNOD", req: request(opMknod, 2, argBytes(&mknod), cstr("fifo")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Mknod", 2, "fifo")
				want := mknod
				want.InHeader = withHeader(opMknod, 2, inHeaderSize+16+5)
				wantIn(t, c, want)
				wantEntry(t, r, 9)
			},
		},
		{
			name: "MKDIR", req: request(opMkdir, 2, argBytes(&mkdir), cstr("dir")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Mkdir", 2, "dir")
				want := mkdir
				want.InHeader = withHeader(opMkdir, 2, inHeaderSize+8+4)
				wantIn(t, c, want)
				wantEntry(t, r, 10)
			},
		},
		{
			name: "UNLINK", req: request(opUnlink, 2, cstr("f")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				wantCall(t, fs, "Unlink", 2, "f")
				wantEmpty(t, r)
			},
		},
		{
			name: "RMDIR", req: request(opRmdir, 2, cstr("d")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				wantCall(t, fs, "Rmdir", 2, "d")
				wantEmpty(t, r)
			},
		},
		{
			name: "RENAME", req: request(opRename, 2, argBytes(&rename2)[:8], cstr("old"), cstr("new")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Rename", 2, "old", "new")
				want := fuse.RenameIn{Newdir: 6, InHeader: withHeader(opRename, 2, inHeaderSize+8+8)}
				wantIn(t, c, want) // Flags 0
				wantEmpty(t, r)
			},
		},
		{
			name: "RENAME2", req: request(opRename2, 2, argBytes(&rename2), cstr("old"), cstr("new")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Rename", 2, "old", "new")
				want := rename2
				want.InHeader = withHeader(opRename2, 2, inHeaderSize+16+8)
				wantIn(t, c, want)
			},
		},
		{
			name: "LINK", req: request(opLink, 2, argBytes(&link), cstr("hard")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Link", 2, "hard")
				want := link
				want.InHeader = withHeader(opLink, 2, inHeaderSize+8+5)
				wantIn(t, c, want)
				wantEntry(t, r, 33)
			},
		},
		{
			name: "OPEN", req: request(opOpen, 4, argBytes(&open)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Open", 4)
				want := open
				want.InHeader = withHeader(opOpen, 4, inHeaderSize+8)
				wantIn(t, c, want)
				var out fuse.OpenOut
				if decodeOut(t, r.payload, &out).Fh != 99 {
					t.Errorf("open out %+v", out)
				}
			},
		},
		{
			name: "CREATE", req: request(opCreate, 2, argBytes(&create), cstr("new")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Create", 2, "new")
				want := create
				want.InHeader = withHeader(opCreate, 2, inHeaderSize+16+4)
				wantIn(t, c, want)
				var out fuse.CreateOut
				decodeOut(t, r.payload, &out)
				if out.NodeId != 11 || out.Fh != 100 {
					t.Errorf("create out %+v", out)
				}
			},
		},
		{
			name: "TMPFILE", req: request(opTmpfile, 2, argBytes(&create)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Tmpfile", 2)
				want := create
				want.InHeader = withHeader(opTmpfile, 2, inHeaderSize+16)
				wantIn(t, c, want)
				var out fuse.CreateOut
				if decodeOut(t, r.payload, &out).Fh != 101 {
					t.Errorf("create out %+v", out)
				}
			},
		},
		{
			// The kernel sends the "/" name the VFS gives an unnamed file.
			name: "TMPFILE with slash name", req: request(opTmpfile, 2, argBytes(&create), cstr("/")),
			check: func(t *testing.T, fs *fakeFS, r reply) { wantCall(t, fs, "Tmpfile", 2) },
		},
		{
			name: "READ", req: request(opRead, 4, argBytes(&read)),
			fs: func(fs *fakeFS) { fs.fileData = data },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Read", 4)
				want := read
				want.InHeader = withHeader(opRead, 4, inHeaderSize+40)
				wantIn(t, c, want)
				if !bytes.Equal(r.payload, data[10:10+4096]) {
					t.Errorf("read %d bytes, not the file's", len(r.payload))
				}
			},
		},
		{
			name: "READ short", req: request(opRead, 4, argBytes(&read)),
			fs: func(fs *fakeFS) { fs.fileData = data[:100] },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if !bytes.Equal(r.payload, data[10:100]) {
					t.Errorf("read %d bytes, want 90", len(r.payload))
				}
			},
		},
		{
			name: "READ larger than out", req: request(opRead, 4, argBytes(&read)), outSize: outHeaderSize + 1000,
			fs: func(fs *fakeFS) { fs.fileData = data },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Read", 4)
				if c.Size != 1000 || c.In.(fuse.ReadIn).Size != 1000 {
					t.Errorf("read into %d bytes with size %d, want 1000", c.Size, c.In.(fuse.ReadIn).Size)
				}
				if !bytes.Equal(r.payload, data[10:1010]) {
					t.Errorf("read %d bytes", len(r.payload))
				}
			},
		},
		{
			name: "WRITE", req: request(opWrite, 4, argBytes(&write), data),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Write", 4)
				want := write
				want.InHeader = withHeader(opWrite, 4, inHeaderSize+40+len(data))
				wantIn(t, c, want)
				if !bytes.Equal(c.Data, data) {
					t.Errorf("wrote %d bytes, not the request's", len(c.Data))
				}
				var out fuse.WriteOut
				if decodeOut(t, r.payload, &out).Size != 5000 {
					t.Errorf("write out %+v", out)
				}
			},
		},
		{
			name: "WRITE empty", req: request(opWrite, 4, argBytes(&fuse.WriteIn{Fh: 4})),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if c := wantCall(t, fs, "Write", 4); len(c.Data) != 0 {
					t.Errorf("wrote %d bytes", len(c.Data))
				}
			},
		},
		{
			name: "WRITE with extensions",
			req:  withExt(request(opWrite, 4, argBytes(&write), data), extRecord(99, bytes.Repeat([]byte{0xee}, 16))),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if c := wantCall(t, fs, "Write", 4); !bytes.Equal(c.Data, data) {
					t.Errorf("wrote %d bytes, want the %d before the extensions", len(c.Data), len(data))
				}
			},
		},
		{
			name: "STATFS", req: request(opStatfs, 1),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				wantCall(t, fs, "StatFs", 1)
				var out fuse.StatfsOut
				if decodeOut(t, r.payload, &out).NameLen != NameMax {
					t.Errorf("statfs %+v", out)
				}
			},
		},
		{
			name: "RELEASE", req: request(opRelease, 4, argBytes(&release)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Release", 4)
				want := release
				want.InHeader = withHeader(opRelease, 4, inHeaderSize+24)
				wantIn(t, c, want)
				wantEmpty(t, r)
			},
		},
		{
			name: "FLUSH", req: request(opFlush, 4, argBytes(&flush)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Flush", 4)
				want := flush
				want.InHeader = withHeader(opFlush, 4, inHeaderSize+24)
				wantIn(t, c, want)
			},
		},
		{
			name: "FSYNC", req: request(opFsync, 4, argBytes(&fsync)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Fsync", 4)
				want := fsync
				want.InHeader = withHeader(opFsync, 4, inHeaderSize+16)
				wantIn(t, c, want)
			},
		},
		{
			name: "OPENDIR", req: request(opOpendir, 1, argBytes(&fuse.OpenIn{Flags: syscall.O_RDONLY})),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				wantCall(t, fs, "OpenDir", 1)
				var out fuse.OpenOut
				if decodeOut(t, r.payload, &out).Fh != 200 {
					t.Errorf("opendir out %+v", out)
				}
			},
		},
		{
			name: "READDIR", req: request(opReaddir, 1, argBytes(&fuse.ReadIn{Fh: 200, Size: 4096})),
			fs: func(fs *fakeFS) { fs.dirNames = []string{"a", "bb", "ccccccccc"} },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if c := wantCall(t, fs, "ReadDir", 1); c.Plus {
					t.Error("READDIR served as plus")
				}
				got := parseDirents(t, r.payload, false)
				if want := []string{"a", "bb", "ccccccccc"}; !slices.Equal(got, want) {
					t.Errorf("entries %q, want %q", got, want)
				}
			},
		},
		{
			name: "READDIR bounded", req: request(opReaddir, 1, argBytes(&fuse.ReadIn{Fh: 200, Size: 64 + 39})),
			fs: func(fs *fakeFS) { fs.dirNames = []string{"a", "bb", "ccccccccc"} },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if got := parseDirents(t, r.payload, false); !slices.Equal(got, []string{"a", "bb"}) {
					t.Errorf("entries %q, want the two that fit in 103 bytes", got)
				}
			},
		},
		{
			name: "READDIRPLUS", req: request(opReaddirplus, 1, argBytes(&fuse.ReadIn{Fh: 200, Offset: 1, Size: 4096})),
			fs: func(fs *fakeFS) { fs.dirNames = []string{"a", "bb", "ccccccccc"} },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if c := wantCall(t, fs, "ReadDir", 1); !c.Plus {
					t.Error("READDIRPLUS served as plain")
				}
				if got := parseDirents(t, r.payload, true); !slices.Equal(got, []string{"bb", "ccccccccc"}) {
					t.Errorf("entries %q", got)
				}
			},
		},
		{
			name: "RELEASEDIR", req: request(opReleasedir, 1, argBytes(&release)),
			check: func(t *testing.T, fs *fakeFS, r reply) { wantCall(t, fs, "ReleaseDir", 1) },
		},
		{
			name: "FSYNCDIR", req: request(opFsyncdir, 1, argBytes(&fsync)),
			check: func(t *testing.T, fs *fakeFS, r reply) { wantCall(t, fs, "FsyncDir", 1) },
		},
		{
			name: "ACCESS", req: request(opAccess, 4, argBytes(&access)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Access", 4)
				want := access
				want.InHeader = withHeader(opAccess, 4, inHeaderSize+8)
				wantIn(t, c, want)
			},
		},
		{
			name: "GETXATTR size", req: request(opGetxattr, 4, getxattr(0), cstr("user.x")),
			fs: func(fs *fakeFS) { fs.xattr = []byte("value") },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if c := wantCall(t, fs, "GetXAttr", 4, "user.x"); c.Size != 0 {
					t.Errorf("size query with a %d-byte buffer", c.Size)
				}
				var out fuse.GetXAttrOut
				if decodeOut(t, r.payload, &out).Size != 5 {
					t.Errorf("getxattr out %+v", out)
				}
			},
		},
		{
			name: "GETXATTR data", req: request(opGetxattr, 4, getxattr(100), cstr("user.x")),
			fs: func(fs *fakeFS) { fs.xattr = []byte("value") },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if c := wantCall(t, fs, "GetXAttr", 4, "user.x"); c.Size != 100 {
					t.Errorf("buffer %d, want 100", c.Size)
				}
				if string(r.payload) != "value" {
					t.Errorf("value %q", r.payload)
				}
			},
		},
		{
			name: "GETXATTR too small", req: request(opGetxattr, 4, getxattr(2), cstr("user.x")), errno: syscall.ERANGE,
			fs: func(fs *fakeFS) { fs.xattr = []byte("value") },
		},
		{
			name: "GETXATTR huge size", req: request(opGetxattr, 4, getxattr(0xffffffff), cstr("user.x")),
			fs: func(fs *fakeFS) { fs.xattr = []byte("value") },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if c := wantCall(t, fs, "GetXAttr", 4, "user.x"); c.Size != xattrSizeMax {
					t.Errorf("buffer %d, want it capped at %d", c.Size, xattrSizeMax)
				}
			},
		},
		{
			name: "GETXATTR bounded by reply space", req: request(opGetxattr, 4, getxattr(4096), cstr("user.x")),
			outSize: outHeaderSize + 3, errno: syscall.ERANGE,
			fs: func(fs *fakeFS) { fs.xattr = []byte("value") },
		},
		{
			name: "LISTXATTR size", req: request(opListxattr, 4, getxattr(0)),
			fs: func(fs *fakeFS) { fs.xattr = []byte("user.a\x00user.b\x00") },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				wantCall(t, fs, "ListXAttr", 4)
				var out fuse.GetXAttrOut
				if decodeOut(t, r.payload, &out).Size != 14 {
					t.Errorf("listxattr out %+v", out)
				}
			},
		},
		{
			name: "LISTXATTR data", req: request(opListxattr, 4, getxattr(14)),
			fs: func(fs *fakeFS) { fs.xattr = []byte("user.a\x00user.b\x00") },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if string(r.payload) != "user.a\x00user.b\x00" {
					t.Errorf("list %q", r.payload)
				}
			},
		},
		{
			name: "SETXATTR", req: request(opSetxattr, 4, argBytes(&setxattrExt)[:8], cstr("user.x"), []byte("hello")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "SetXAttr", 4, "user.x")
				want := fuse.SetXAttrIn{Size: 5, Flags: 1, InHeader: withHeader(opSetxattr, 4, inHeaderSize+8+7+5)}
				wantIn(t, c, want)
				if string(c.Data) != "hello" {
					t.Errorf("value %q", c.Data)
				}
			},
		},
		{
			name: "SETXATTR extended", req: request(opSetxattr, 4, argBytes(&setxattrExt), cstr("system.posix_acl_access"), []byte("hello")),
			sess: func(s *Session) { s.Flags |= fuse.CAP_SETXATTR_EXT },
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "SetXAttr", 4, "system.posix_acl_access")
				want := setxattrExt
				want.InHeader = withHeader(opSetxattr, 4, inHeaderSize+16+24+5)
				wantIn(t, c, want)
				if string(c.Data) != "hello" {
					t.Errorf("value %q", c.Data)
				}
			},
		},
		{
			name: "SETXATTR empty value", req: request(opSetxattr, 4, argBytes(&fuse.SetXAttrIn{})[:8], cstr("user.x")),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				if c := wantCall(t, fs, "SetXAttr", 4, "user.x"); len(c.Data) != 0 {
					t.Errorf("value %q", c.Data)
				}
			},
		},
		{
			name: "REMOVEXATTR", req: request(opRemovexattr, 4, cstr("user.x")),
			check: func(t *testing.T, fs *fakeFS, r reply) { wantCall(t, fs, "RemoveXAttr", 4, "user.x") },
		},
		{
			name: "FALLOCATE", req: request(opFallocate, 4, argBytes(&falloc)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Fallocate", 4)
				want := falloc
				want.InHeader = withHeader(opFallocate, 4, inHeaderSize+32)
				wantIn(t, c, want)
			},
		},
		{
			name: "LSEEK", req: request(opLseek, 4, argBytes(&lseek)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "Lseek", 4)
				want := lseek
				want.InHeader = withHeader(opLseek, 4, inHeaderSize+24)
				wantIn(t, c, want)
				var out fuse.LseekOut
				if decodeOut(t, r.payload, &out).Offset != 301 {
					t.Errorf("lseek out %+v", out)
				}
			},
		},
		{
			name: "COPY_FILE_RANGE", req: request(opCopyFileRange, 4, argBytes(&cfr)),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				c := wantCall(t, fs, "CopyFileRange", 4)
				want := cfr
				want.InHeader = withHeader(opCopyFileRange, 4, inHeaderSize+56)
				wantIn(t, c, want)
				var out fuse.WriteOut
				if decodeOut(t, r.payload, &out).Size != 6 {
					t.Errorf("copy_file_range out %+v", out)
				}
			},
		},
		{
			name: "SYNCFS", req: request(opSyncfs, 1, make([]byte, 8)),
			check: func(t *testing.T, fs *fakeFS, r reply) { wantCall(t, fs, "SyncFS", 1) },
		},
		{
			name: "INTERRUPT", req: request(opInterrupt, 0, argBytes(&fuse.InterruptIn{Unique: 5})), noReply: true,
			check: func(t *testing.T, fs *fakeFS, r reply) { wantNoCall(t, fs, r) },
		},
		{
			name: "NOTIFY_REPLY", req: request(opNotifyReply, 4, make([]byte, 40)), noReply: true,
			check: func(t *testing.T, fs *fakeFS, r reply) { wantNoCall(t, fs, r) },
		},
		{
			name: "DESTROY", req: request(opDestroy, 0),
			check: func(t *testing.T, fs *fakeFS, r reply) {
				wantCall(t, fs, "Destroy", 0)
				wantEmpty(t, r)
			},
		},
	}
	for _, op := range []opcode{opGetlk, opSetlk, opSetlkw, opBmap, opPoll, opSetupMapping, opRemoveMapping, opStatx, opCopyFileRange64, 7, 99, 4096} {
		cases = append(cases, requestCase{
			name: "unsupported " + opcodeName(op), req: request(op, 4, make([]byte, 64)), errno: syscall.ENOSYS,
			check: func(t *testing.T, fs *fakeFS, r reply) { wantNoCall(t, fs, r) },
		})
	}
	cases = append(cases, requestCase{
		name: "IOCTL", req: request(opIoctl, 4, make([]byte, 32)), errno: syscall.ENOTTY,
		check: func(t *testing.T, fs *fakeFS, r reply) { wantNoCall(t, fs, r) },
	})
	runCases(t, cases)
}

func opcodeName(op opcode) string {
	if info := lookupOp(uint32(op)); info != nil {
		return info.name
	}
	return "OPCODE_" + strconv.Itoa(int(op))
}

// parseDirents decodes a READDIR(PLUS) payload strictly: every entry 8-byte
// aligned, padding zero, names sane. It returns the names.
func parseDirents(t *testing.T, b []byte, plus bool) []string {
	t.Helper()
	var names []string
	for len(b) > 0 {
		if plus {
			if len(b) < entryOutSize {
				t.Fatalf("truncated entry_out: %d bytes", len(b))
			}
			b = b[entryOutSize:]
		}
		if len(b) < direntHeaderSize {
			t.Fatalf("truncated dirent: %d bytes", len(b))
		}
		namelen := int(binary.NativeEndian.Uint32(b[16:]))
		size := direntSize(namelen)
		if size > len(b) {
			t.Fatalf("dirent of %d bytes in %d", size, len(b))
		}
		name := b[direntHeaderSize : direntHeaderSize+namelen]
		for _, p := range b[direntHeaderSize+namelen : size] {
			if p != 0 {
				t.Fatalf("dirent %q: nonzero padding", name)
			}
		}
		if typ := binary.NativeEndian.Uint32(b[20:]); typ != syscall.DT_REG {
			t.Errorf("dirent %q: type %d, want DT_REG", name, typ)
		}
		names = append(names, string(name))
		b = b[size:]
	}
	return names
}
