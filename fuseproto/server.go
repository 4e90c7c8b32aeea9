package fuseproto

import (
	"context"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ferryfs/ferryfs/internal/warnlimit"
)

// ServerOptions configures a Server.
type ServerOptions struct {
	// MaxWrite is the largest WRITE payload we accept (and announce in
	// INIT). Default 1 MiB. It is rounded down to a multiple of the 4 KiB
	// page, at least one page and at most 65535 pages; MaxPages announced
	// is MaxWrite/4096.
	MaxWrite uint32
	// Logger receives debug logs of requests and warnings about malformed
	// ones. nil means slog.Default().
	Logger *slog.Logger
}

const (
	defaultMaxWrite = 1 << 20
	// maxMaxPages is the most fuse_init_out.max_pages can express.
	maxMaxPages = 1<<16 - 1
	// minReadBuffer is FUSE_MIN_READ_BUFFER: /dev/fuse refuses reads into
	// anything smaller.
	minReadBuffer = 8192
)

// Server serves one FUSE connection. It is safe for concurrent HandleRequest
// calls.
type Server struct {
	fs       FileSystem
	maxWrite uint32
	log      *slog.Logger

	// session is what INIT negotiated, nil before INIT and after DESTROY.
	// A Session is never modified once published, so a request can use
	// the pointer it loaded for as long as it runs.
	session atomic.Pointer[Session]
	// initMu serializes the session transitions (INIT, DESTROY,
	// SetSession); ordinary requests only load session.
	initMu sync.Mutex

	calls sync.Pool // *call
	bufs  sync.Pool // *[]byte scratch for variable-size replies

	warnings warnlimit.Limiter
	// sessionLogs rate-limits the session's info logs (INIT, DESTROY):
	// a guest can send those as often as it likes.
	sessionLogs warnlimit.Limiter
}

// NewServer returns a Server that serves fs.
func NewServer(fs FileSystem, opts ServerOptions) *Server {
	s := &Server{
		fs:       fs,
		maxWrite: normalizeMaxWrite(opts.MaxWrite),
		log:      opts.Logger,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.calls.New = func() any { return new(call) }
	return s
}

// normalizeMaxWrite applies the default and the page-granular bounds to a
// configured MaxWrite.
func normalizeMaxWrite(w uint32) uint32 {
	if w == 0 {
		w = defaultMaxWrite
	}
	w = min(max(w, pageSize), maxMaxPages*pageSize)
	return w / pageSize * pageSize
}

// maxPages is the max_pages announced in INIT.
func (s *Server) maxPages() uint16 { return uint16(s.maxWrite / pageSize) }

// largestPayload is the largest reply payload or request argument block any
// request can carry: a full WRITE or READ, or a maximal extended attribute.
func (s *Server) largestPayload() int { return max(int(s.maxWrite), xattrSizeMax) }

// ReplyBufferSize is how large a single out buffer must be for any reply
// when out is one contiguous buffer (as with /dev/fuse): MaxWrite plus a
// page, and no less than a maximal extended attribute value plus a page.
func (s *Server) ReplyBufferSize() int { return s.largestPayload() + pageSize }

// RequestBufferSize is how large a single in buffer must be for any request
// when in is one contiguous buffer: MaxWrite plus a page (room for the header,
// the WRITE arguments and extensions), no less than a maximal SETXATTR, and
// at least FUSE_MIN_READ_BUFFER.
func (s *Server) RequestBufferSize() int {
	return max(s.largestPayload()+pageSize, minReadBuffer)
}

// Session returns a copy of what INIT negotiated and whether INIT happened
// (and no DESTROY since).
func (s *Server) Session() (Session, bool) {
	if p := s.session.Load(); p != nil {
		return *p, true
	}
	return Session{}, false
}

// SetSession installs a session negotiated elsewhere (a migration source), so
// requests are served without INIT. It replaces any current session.
func (s *Server) SetSession(sess Session) {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	s.session.Store(&sess)
}

// call is the state of one request. Calls are pooled: the typed scratch
// structures live here because passing a pointer to a local through a
// FileSystem interface method would move it to the heap on every request.
type call struct {
	srv *Server
	in  inView
	out outView
	op  *opInfo
	req Request
	// replies is false for requests that take no reply and for requests
	// too broken to answer.
	replies bool

	argSize int // fixed argument bytes, as checked against the table
	argsEnd int // end of the arguments: where the extensions begin
	tailOff int // first byte after the fixed arguments and the names
	names   [2]string
	payload int // reply payload bytes written after the out header

	nameBuf [pathMax]byte
	extBuf  []byte   // copy of the request's extensions, kept for reuse
	iov     [][]byte // sub-slices handed to Read and Write
	buf     *[]byte  // pooled scratch buffer, returned in release

	v scratch
}

// scratch holds one of every fixed-size structure passed to the FileSystem.
// Each handler decodes into (or zeroes) the fields it uses before use.
type scratch struct {
	initIn          fuse.InitIn
	initOut         fuse.InitOut
	forgetIn        fuse.ForgetIn
	getAttrIn       fuse.GetAttrIn
	setAttrIn       fuse.SetAttrIn
	mknodIn         fuse.MknodIn
	mkdirIn         fuse.MkdirIn
	renameIn        fuse.RenameIn
	linkIn          fuse.LinkIn
	openIn          fuse.OpenIn
	createIn        fuse.CreateIn
	readIn          fuse.ReadIn
	writeIn         fuse.WriteIn
	releaseIn       fuse.ReleaseIn
	flushIn         fuse.FlushIn
	fsyncIn         fuse.FsyncIn
	fallocateIn     fuse.FallocateIn
	lseekIn         fuse.LseekIn
	copyFileRangeIn fuse.CopyFileRangeIn
	accessIn        fuse.AccessIn
	getXAttrIn      fuse.GetXAttrIn
	setXAttrIn      fuse.SetXAttrIn

	entryOut    fuse.EntryOut
	attrOut     fuse.AttrOut
	openOut     fuse.OpenOut
	createOut   fuse.CreateOut
	writeOut    fuse.WriteOut
	statfsOut   fuse.StatfsOut
	lseekOut    fuse.LseekOut
	getXAttrOut fuse.GetXAttrOut

	dirWriter DirWriter
}

func (s *Server) acquire(in, out [][]byte) *call {
	c := s.calls.Get().(*call)
	c.srv = s
	c.in = newInView(in)
	c.out = newOutView(out)
	return c
}

// release returns c to the pool, dropping every reference to the request's
// buffers so that the pool does not keep guest memory reachable.
func (s *Server) release(c *call) {
	if c.buf != nil {
		s.bufs.Put(c.buf)
	}
	clear(c.iov)
	// Field by field: the name buffer and the scratch structures are
	// large and need no clearing (they are overwritten before use).
	c.srv, c.op, c.buf = nil, nil, nil
	c.in, c.out = inView{}, outView{}
	c.req = Request{}
	c.replies = false
	c.argSize, c.argsEnd, c.tailOff, c.payload = 0, 0, 0, 0
	c.names = [2]string{}
	c.iov = c.iov[:0]
	s.calls.Put(c)
}

// scratchBuf returns a pooled buffer of length n, given back when the
// request ends.
func (c *call) scratchBuf(n int) []byte {
	p, _ := c.srv.bufs.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
	}
	if cap(*p) < n {
		// Round up so that a buffer suits the next, slightly larger,
		// request too.
		*p = make([]byte, (n+pageSize-1)/pageSize*pageSize)
	}
	c.buf = p
	return (*p)[:n]
}

func (c *call) fs() FileSystem { return c.srv.fs }

// HandleRequest decodes one request from the readable buffers in (their
// concatenation is the request: fuse_in_header, arguments, and for WRITE the
// data), serves it and writes the reply (fuse_out_header + payload) into the
// writable buffers out, in order. It returns the number of reply bytes
// written, 0 when the request takes no reply (FORGET, BATCH_FORGET,
// INTERRUPT, or a request too broken to answer, i.e. shorter than a header).
// It never panics on any input.
func (s *Server) HandleRequest(in [][]byte, out [][]byte) (n int) {
	c := s.acquire(in, out)
	defer func() {
		if p := recover(); p != nil {
			if isMemoryFault(p) {
				// The request's buffers faulted (a transport that
				// maps them, such as vhost-user, asked for a panic on
				// fault): that is the transport's to handle, and any
				// reply written here would fault again.
				s.release(c)
				panic(p)
			}
			n = s.recovered(c, p)
		}
		s.release(c)
	}()
	return s.serve(c)
}

// isMemoryFault reports whether a recovered panic is a memory fault raised
// under debug.SetPanicOnFault: a runtime error with the faulting address.
func isMemoryFault(p any) bool {
	_, ok := p.(interface {
		error
		RuntimeError()
		Addr() uintptr
	})
	return ok
}

// recovered is the backstop for a panic while serving c, in this package or
// in the filesystem: it is logged with its stack and the request, if it
// takes a reply, is answered with EIO.
func (s *Server) recovered(c *call, p any) int {
	s.log.Error("panic serving FUSE request",
		slog.String("op", c.opName()),
		slog.Uint64("unique", c.req.Header.Unique),
		slog.Any("panic", p),
		slog.String("stack", string(debug.Stack())))
	if !c.replies {
		return 0
	}
	return c.finish(syscall.EIO)
}

func (s *Server) serve(c *call) int {
	if c.in.n < inHeaderSize {
		s.warn("request shorter than fuse_in_header", c,
			badRequest(syscall.EINVAL, "%d bytes", c.in.n))
		return 0
	}
	c.in.readAt(asBytes(&c.req.Header), 0)
	c.op = lookupOp(c.req.Header.Opcode)
	c.replies = c.op == nil || !c.op.noReply
	if c.replies && c.out.n < outHeaderSize {
		s.warn("no room for a reply", c,
			badRequest(syscall.EINVAL, "%d bytes of out buffer", c.out.n))
		c.replies = false
		return 0
	}
	errno := s.dispatch(c)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "FUSE request",
			slog.String("op", c.opName()),
			slog.Uint64("node", c.req.Header.NodeId),
			slog.Uint64("unique", c.req.Header.Unique),
			slog.Int("errno", int(errno)))
	}
	if !c.replies {
		return 0
	}
	return c.finish(errno)
}

// dispatch checks c against the opcode table and the session and runs its
// handler.
func (s *Server) dispatch(c *call) syscall.Errno {
	sess := s.session.Load()
	c.req.Session = sess
	op := c.req.Header.Opcode
	if sess == nil && op != uint32(opInit) {
		// Only INIT makes sense before INIT; the kernel never sends
		// anything else, so this is a confused or hostile peer.
		s.warn("request before INIT", c, badRequest(syscall.EIO, "no session"))
		return syscall.EIO
	}
	if c.op == nil {
		return c.reject(badRequest(syscall.ENOSYS, "unknown opcode %d", op))
	}
	if err := c.parseArgs(sess); err != nil {
		return c.reject(err)
	}
	if c.replies && c.op.outSize > c.payloadCap() {
		return c.reject(badRequest(syscall.EIO, "%d-byte reply in %d bytes of out buffer", c.op.outSize, c.payloadCap()))
	}
	return c.op.handler(c)
}

// reject logs a malformed request and returns the errno to answer it with.
func (c *call) reject(err error) syscall.Errno {
	c.srv.warn("malformed FUSE request", c, err)
	return errnoOf(err)
}

func (c *call) opName() string {
	if c.op != nil {
		return c.op.name
	}
	// Not via the table's names: this is reachable from the handlers,
	// which the table's initializer refers to.
	return "OPCODE_" + strconv.FormatUint(uint64(c.req.Header.Opcode), 10)
}

// logSession logs a session event at info level, rate-limited (see
// Server.sessionLogs).
func (s *Server) logSession(msg string, attrs ...slog.Attr) {
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	ok, suppressed := s.sessionLogs.Allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

// warn logs a problem with a request, rate-limited: every warning is caused
// by the guest, and a guest must not be able to flood the host's logs.
func (s *Server) warn(msg string, c *call, err error) {
	if !s.log.Enabled(context.Background(), slog.LevelWarn) {
		return
	}
	ok, suppressed := s.warnings.Allow(time.Now())
	if !ok {
		return
	}
	attrs := []slog.Attr{
		slog.String("op", c.opName()),
		slog.Uint64("node", c.req.Header.NodeId),
		slog.Uint64("unique", c.req.Header.Unique),
		slog.String("error", err.Error()),
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	s.log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}
