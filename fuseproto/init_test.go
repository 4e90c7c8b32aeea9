package fuseproto

import (
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// kernelFlags is what a recent kernel offers in the low word.
const kernelFlags = fuse.CAP_ASYNC_READ | fuse.CAP_POSIX_LOCKS | fuse.CAP_ATOMIC_O_TRUNC |
	fuse.CAP_EXPORT_SUPPORT | fuse.CAP_BIG_WRITES | fuse.CAP_DONT_MASK | fuse.CAP_FLOCK_LOCKS |
	fuse.CAP_AUTO_INVAL_DATA | fuse.CAP_READDIRPLUS | fuse.CAP_READDIRPLUS_AUTO |
	fuse.CAP_ASYNC_DIO | fuse.CAP_WRITEBACK_CACHE | fuse.CAP_PARALLEL_DIROPS |
	fuse.CAP_HANDLE_KILLPRIV | fuse.CAP_POSIX_ACL | fuse.CAP_MAX_PAGES |
	fuse.CAP_CACHE_SYMLINKS | fuse.CAP_SETXATTR_EXT | fuse.CAP_INIT_EXT

// initRequest builds a FUSE_INIT; a kernel older than 7.36 sends the
// 16-byte fuse_init_in, a newer one the 64-byte form with flags2.
func initRequest(major, minor uint32, flags uint64) []byte {
	in := fuse.InitIn{Major: major, Minor: minor, MaxReadAhead: 128 << 10, Flags: uint32(flags), Flags2: uint32(flags >> 32)}
	args := argBytes(&in)
	if minor < 36 {
		args = args[:initInMinSize]
	}
	return request(opInit, 0, args)
}

func newInitServer(fs *fakeFS, maxWrite uint32) *Server {
	return NewServer(fs, ServerOptions{MaxWrite: maxWrite, Logger: quietLogger()})
}

func decodeInitOut(t *testing.T, r reply) fuse.InitOut {
	t.Helper()
	if r.errno() != 0 {
		t.Fatalf("INIT failed: %v", r.errno())
	}
	var out fuse.InitOut
	return *decodeOut(t, r.payload, &out)
}

func TestInitNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		minor     uint32
		offered   uint64
		want      uint64 // what the filesystem asks for
		wantMinor uint32
		wantFlags uint64
	}{
		{
			name: "minor capped", minor: 45, offered: kernelFlags | fuse.CAP_SECURITY_CTX,
			want: fuse.CAP_READDIRPLUS | fuse.CAP_SECURITY_CTX, wantMinor: MaxMinor,
			wantFlags: fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_MAX_PAGES |
				fuse.CAP_PARALLEL_DIROPS | fuse.CAP_READDIRPLUS | fuse.CAP_SECURITY_CTX | fuse.CAP_INIT_EXT,
		},
		{
			name: "older kernel keeps its minor", minor: 31, offered: kernelFlags &^ (fuse.CAP_INIT_EXT | fuse.CAP_SETXATTR_EXT),
			want: fuse.CAP_WRITEBACK_CACHE, wantMinor: 31,
			wantFlags: fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_MAX_PAGES |
				fuse.CAP_PARALLEL_DIROPS | fuse.CAP_WRITEBACK_CACHE,
		},
		{
			name: "oldest minor", minor: MinMinor, offered: fuse.CAP_ASYNC_READ, wantMinor: MinMinor,
			wantFlags: fuse.CAP_ASYNC_READ,
		},
		{
			name: "only offered flags", minor: 38, offered: fuse.CAP_INIT_EXT | fuse.CAP_BIG_WRITES,
			want: fuse.CAP_READDIRPLUS | fuse.CAP_SECURITY_CTX, wantMinor: 38,
			wantFlags: fuse.CAP_BIG_WRITES | fuse.CAP_INIT_EXT,
		},
		{
			name: "refused flags", minor: 41, offered: kernelFlags | fuse.CAP_HAS_INODE_DAX | fuse.CAP_PASSTHROUGH,
			want:      fuse.CAP_POSIX_LOCKS | fuse.CAP_FLOCK_LOCKS | fuse.CAP_HAS_INODE_DAX | fuse.CAP_PASSTHROUGH | fuse.CAP_SETXATTR_EXT,
			wantMinor: 41,
			wantFlags: fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_MAX_PAGES |
				fuse.CAP_PARALLEL_DIROPS | fuse.CAP_SETXATTR_EXT | fuse.CAP_INIT_EXT,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &fakeFS{initWant: tc.want}
			s := newInitServer(fs, 0)
			out := decodeInitOut(t, serve(t, s, initRequest(7, tc.minor, tc.offered), 4096))
			if out.Major != 7 || out.Minor != tc.wantMinor {
				t.Errorf("version %d.%d, want 7.%d", out.Major, out.Minor, tc.wantMinor)
			}
			if got := out.Flags64(); got != tc.wantFlags {
				t.Errorf("flags %#x, want %#x (diff %#x)", got, tc.wantFlags, got^tc.wantFlags)
			}
			if out.MaxWrite != defaultMaxWrite || out.MaxPages != defaultMaxWrite/pageSize || out.TimeGran != 1 || out.MaxReadAhead != 128<<10 {
				t.Errorf("limits %+v", out)
			}
			// What the filesystem saw.
			c := wantCall(t, fs, "Init", 0)
			if seen := c.In.(fuse.InitOut); seen.MaxWrite != defaultMaxWrite || seen.MaxPages != 256 {
				t.Errorf("filesystem saw %+v", seen)
			}
			sess, ok := s.Session()
			if !ok {
				t.Fatal("no session after INIT")
			}
			want := Session{Major: 7, Minor: tc.wantMinor, Flags: tc.wantFlags, MaxWrite: defaultMaxWrite,
				MaxReadahead: 128 << 10, MaxPages: 256, TimeGran: 1}
			if tc.wantFlags&fuse.CAP_MAX_PAGES == 0 {
				want.MaxPages = defaultMaxPages
			}
			if sess != want {
				t.Errorf("session %+v, want %+v", sess, want)
			}
		})
	}
}

// TestInitFlags2WithoutInitExt: a kernel that does not offer INIT_EXT has
// no flags2, whatever the bytes there say.
func TestInitFlags2WithoutInitExt(t *testing.T) {
	fs := &fakeFS{initWant: fuse.CAP_SECURITY_CTX}
	s := newInitServer(fs, 0)
	in := fuse.InitIn{Major: 7, Minor: 38, Flags: fuse.CAP_ASYNC_READ, Flags2: uint32(fuse.CAP_SECURITY_CTX >> 32)}
	out := decodeInitOut(t, serve(t, s, request(opInit, 0, argBytes(&in)), 4096))
	if out.Flags != fuse.CAP_ASYNC_READ || out.Flags2 != 0 {
		t.Errorf("flags %#x flags2 %#x", out.Flags, out.Flags2)
	}
}

func TestInitRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		req   []byte
		errno syscall.Errno
	}{
		{"old minor", initRequest(7, MinMinor-1, fuse.CAP_ASYNC_READ), syscall.EPROTO},
		{"ancient minor", initRequest(7, 0, 0), syscall.EPROTO},
		{"old major", initRequest(6, 99, 0), syscall.EPROTO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &fakeFS{}
			s := newInitServer(fs, 0)
			if r := serve(t, s, tc.req, 4096); r.errno() != tc.errno {
				t.Errorf("errno %v, want %v", r.errno(), tc.errno)
			}
			if _, ok := s.Session(); ok {
				t.Error("session after refused INIT")
			}
			wantNoCall(t, fs, reply{})
		})
	}
}

func TestInitNewerMajor(t *testing.T) {
	fs := &fakeFS{}
	s := newInitServer(fs, 0)
	out := decodeInitOut(t, serve(t, s, initRequest(8, 0, 0), 4096))
	if out.Major != 7 || out.Flags64() != 0 {
		t.Errorf("reply %+v, want just our major", out)
	}
	if _, ok := s.Session(); ok {
		t.Error("session after an INIT we asked to retry")
	}
	// The kernel retries with 7.x.
	decodeInitOut(t, serve(t, s, initRequest(7, 40, fuse.CAP_INIT_EXT), 4096))
	if sess, ok := s.Session(); !ok || sess.Minor != 40 {
		t.Errorf("session %+v %v after the retry", sess, ok)
	}
}

func TestInitFilesystemError(t *testing.T) {
	fs := &fakeFS{errno: syscall.ENOMEM}
	s := newInitServer(fs, 0)
	if r := serve(t, s, initRequest(7, 41, kernelFlags), 4096); r.errno() != syscall.ENOMEM {
		t.Errorf("errno %v, want ENOMEM", r.errno())
	}
	if _, ok := s.Session(); ok {
		t.Error("session after failed INIT")
	}
}

// TestInitTwice is a guest that reboots: a new INIT without DESTROY ends the
// old session (the filesystem forgets what it held) and starts a new one.
func TestInitTwice(t *testing.T) {
	fs := &fakeFS{}
	s := newInitServer(fs, 0)
	decodeInitOut(t, serve(t, s, initRequest(7, 41, kernelFlags), 4096))
	decodeInitOut(t, serve(t, s, initRequest(7, 30, fuse.CAP_ASYNC_READ), 4096))
	if fs.destroyed != 1 {
		t.Errorf("Destroy called %d times, want 1", fs.destroyed)
	}
	if sess, _ := s.Session(); sess.Minor != 30 {
		t.Errorf("session after the second INIT: %+v", sess)
	}
}

func TestReset(t *testing.T) {
	fs := &fakeFS{}
	s := newInitServer(fs, 0)
	s.Reset() // before INIT: nothing to drop
	decodeInitOut(t, serve(t, s, initRequest(7, 41, kernelFlags), 4096))
	s.Reset()
	if _, ok := s.Session(); ok || fs.destroyed != 1 {
		t.Errorf("after Reset: session %v, Destroy called %d times", ok, fs.destroyed)
	}
}

// TestDestroyThenInit is a virtio-fs unmount followed by a new mount.
func TestDestroyThenInit(t *testing.T) {
	fs := &fakeFS{}
	s := newInitServer(fs, 0)
	decodeInitOut(t, serve(t, s, initRequest(7, 41, kernelFlags), 4096))
	if r := serve(t, s, request(opDestroy, 0), 4096); r.errno() != 0 || r.n != outHeaderSize {
		t.Fatalf("DESTROY: %+v", r)
	}
	if fs.destroyed != 1 {
		t.Errorf("Destroy called %d times", fs.destroyed)
	}
	if _, ok := s.Session(); ok {
		t.Error("session survived DESTROY")
	}
	if r := serve(t, s, request(opGetattr, 1, make([]byte, 16)), 4096); r.errno() != syscall.EIO {
		t.Errorf("GETATTR after DESTROY: errno %v, want EIO", r.errno())
	}
	decodeInitOut(t, serve(t, s, initRequest(7, 33, fuse.CAP_ASYNC_READ), 4096))
	if sess, ok := s.Session(); !ok || sess.Minor != 33 {
		t.Errorf("session %+v %v after the second mount", sess, ok)
	}
}

func TestInitLimits(t *testing.T) {
	for _, tc := range []struct {
		name         string
		maxWrite     uint32
		hook         func(*fuse.InitOut)
		wantMaxWrite uint32
		wantMaxPages uint16
		wantReadAh   uint32
		wantGran     uint32
	}{
		{name: "configured", maxWrite: 256 << 10, wantMaxWrite: 256 << 10, wantMaxPages: 64, wantReadAh: 128 << 10, wantGran: 1},
		{name: "rounded to pages", maxWrite: 10000, wantMaxWrite: 8192, wantMaxPages: 2, wantReadAh: 128 << 10, wantGran: 1},
		{name: "at least a page", maxWrite: 1, wantMaxWrite: 4096, wantMaxPages: 1, wantReadAh: 128 << 10, wantGran: 1},
		{
			name: "filesystem lowers", hook: func(o *fuse.InitOut) {
				o.MaxWrite, o.MaxPages, o.MaxReadAhead, o.TimeGran = 64<<10, 16, 4096, 1000
			},
			wantMaxWrite: 64 << 10, wantMaxPages: 16, wantReadAh: 4096, wantGran: 1000,
		},
		{
			name: "filesystem cannot raise", hook: func(o *fuse.InitOut) {
				o.MaxWrite, o.MaxPages, o.MaxReadAhead = 64<<20, 60000, 1<<30
			},
			wantMaxWrite: defaultMaxWrite, wantMaxPages: 256, wantReadAh: 128 << 10, wantGran: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &fakeFS{initHook: tc.hook}
			s := newInitServer(fs, tc.maxWrite)
			out := decodeInitOut(t, serve(t, s, initRequest(7, 41, kernelFlags), 4096))
			if out.MaxWrite != tc.wantMaxWrite || out.MaxPages != tc.wantMaxPages || out.MaxReadAhead != tc.wantReadAh || out.TimeGran != tc.wantGran {
				t.Errorf("limits %+v", out)
			}
			sess, _ := s.Session()
			if sess.MaxWrite != tc.wantMaxWrite || sess.MaxPages != tc.wantMaxPages || sess.MaxReadahead != tc.wantReadAh || sess.TimeGran != tc.wantGran {
				t.Errorf("session %+v", sess)
			}
		})
	}
}

func TestBufferSizes(t *testing.T) {
	for _, tc := range []struct {
		maxWrite       uint32
		wantReq, wantR int
	}{
		{0, 1<<20 + 4096, 1<<20 + 4096},
		{256 << 10, 256<<10 + 4096, 256<<10 + 4096},
		// A maximal xattr must fit whatever max_write says.
		{4096, xattrSizeMax + 4096, xattrSizeMax + 4096},
	} {
		s := NewServer(&fakeFS{}, ServerOptions{MaxWrite: tc.maxWrite})
		if got := s.RequestBufferSize(); got != tc.wantReq {
			t.Errorf("MaxWrite %d: RequestBufferSize %d, want %d", tc.maxWrite, got, tc.wantReq)
		}
		if got := s.ReplyBufferSize(); got != tc.wantR {
			t.Errorf("MaxWrite %d: ReplyBufferSize %d, want %d", tc.maxWrite, got, tc.wantR)
		}
	}
}

// TestLargestRequestsFit serves the largest WRITE, SETXATTR, READ and
// GETXATTR through buffers of exactly the advertised sizes.
func TestLargestRequestsFit(t *testing.T) {
	for _, maxWrite := range []uint32{4096, 128 << 10, 1 << 20} {
		fs := &fakeFS{quiet: true, fileData: make([]byte, maxWrite), xattr: make([]byte, xattrSizeMax)}
		s := NewServer(fs, ServerOptions{MaxWrite: maxWrite, Logger: quietLogger()})
		sess := testSession()
		sess.MaxWrite = maxWrite
		s.SetSession(sess)
		long := "user." + strings.Repeat("x", NameMax-len("user."))
		for _, req := range [][]byte{
			request(opWrite, 4, argBytes(&fuse.WriteIn{Size: maxWrite}), make([]byte, maxWrite)),
			request(opSetxattr, 4, argBytes(&fuse.SetXAttrIn{Size: xattrSizeMax})[:8], cstr(long), make([]byte, xattrSizeMax)),
			request(opRead, 4, argBytes(&fuse.ReadIn{Size: maxWrite})),
			request(opGetxattr, 4, argBytes(&fuse.GetXAttrIn{Size: xattrSizeMax}), cstr(long)),
		} {
			if len(req) > s.RequestBufferSize() {
				t.Errorf("MaxWrite %d: %d-byte request over RequestBufferSize %d", maxWrite, len(req), s.RequestBufferSize())
			}
			r := serve(t, s, req, s.ReplyBufferSize())
			if r.errno() != 0 {
				t.Errorf("MaxWrite %d: errno %v", maxWrite, r.errno())
			}
		}
	}
}
