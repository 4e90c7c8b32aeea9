package hostile

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryfs/ferryfs/tests/vhostfront"
)

// daemonBin is the ferryfs binary TestMain built.
var daemonBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	// A fuzz worker only runs the in-process fuzz target: no daemon.
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "ferryfs-hostile-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	daemonBin = filepath.Join(tmp, "ferryfs")
	if err := vhostfront.BuildDaemon(daemonBin); err != nil {
		fmt.Fprintf(os.Stderr, "hostile: building ferryfs: %v\n", err)
		return 1
	}
	return m.Run()
}

const (
	// timeout bounds every wait of these tests: a reply, a log line, an
	// exit.
	timeout = 15 * time.Second
	// queueSize is the size of the queues the tests start.
	queueSize = 256
)

// env is a running daemon with a front-end connected to it.
type env struct {
	t      *testing.T
	d      *vhostfront.Daemon
	f      *vhostfront.Frontend
	shared string
	hi     *vhostfront.Queue // queue 0, the high-priority queue
	rq     *vhostfront.Queue // queue 1, the first request queue
	fs     *vhostfront.FUSE  // on rq
}

// config says how far start sets things up.
type config struct {
	front    vhostfront.Options
	noQueues bool // stop after SET_MEM_TABLE
	noInit   bool // start the queues but send no FUSE INIT
	logLevel string
}

// start runs a daemon on a fresh shared directory, connects, negotiates,
// sends the memory table, starts queues 0 and 1 and does FUSE INIT, as
// cfg allows.
func start(t *testing.T, cfg config) *env {
	t.Helper()
	e := &env{t: t, shared: t.TempDir()}
	d, err := vhostfront.StartDaemon(vhostfront.DaemonOptions{
		Binary: daemonBin, SocketPath: filepath.Join(t.TempDir(), "vhost.sock"),
		SharedDir: e.shared, LogLevel: cfg.logLevel,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	t.Cleanup(func() {
		d.Kill()
		if t.Failed() {
			t.Logf("daemon output:\n%s", headTail(d.Output(), 40, 20))
		}
	})
	e.f, err = vhostfront.Connect(d, cfg.front, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.f.Close() })
	if cfg.noQueues {
		return e
	}
	if e.hi, err = e.f.StartQueue(0, queueSize); err != nil {
		t.Fatal(err)
	}
	if e.rq, err = e.f.StartQueue(1, queueSize); err != nil {
		t.Fatal(err)
	}
	e.fs = vhostfront.NewFUSE(e.rq)
	if cfg.noInit {
		return e
	}
	if _, err := e.fs.Init(); err != nil {
		t.Fatalf("INIT: %v", err)
	}
	return e
}

// fuseOn returns a FUSE client on q sharing e.fs's request ids.
func (e *env) fuseOn(q *vhostfront.Queue) *vhostfront.FUSE {
	c := vhostfront.NewFUSE(q)
	for i := 0; i < 1000; i++ { // keep the ids apart from e.fs's
		c.NextUnique()
	}
	return c
}

// serves checks that q still serves a normal request: GETATTR of the root
// comes back as a directory.
func (e *env) serves(q *vhostfront.Queue) {
	e.t.Helper()
	c := e.fs
	if q != e.rq {
		c = e.fuseOn(q)
	}
	a, err := c.GetAttr(vhostfront.RootID)
	if err != nil {
		e.t.Fatalf("queue %d no longer serves: GETATTR: %v", q.Index, err)
	}
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		e.t.Fatalf("queue %d: GETATTR of the root gives mode %#o", q.Index, a.Mode)
	}
}

// alive checks that the daemon runs and has not crashed.
func (e *env) alive() {
	e.t.Helper()
	if e.d.Exited() {
		e.t.Fatalf("the daemon exited")
	}
	if err := e.d.CheckNoCrash(); err != nil {
		e.t.Fatal(err)
	}
}

// finish disconnects and checks the daemon exits 0 without a crash.
func (e *env) finish() {
	e.t.Helper()
	e.alive()
	e.f.Close()
	code, err := e.d.Wait(timeout)
	if err != nil {
		e.t.Fatal(err)
	}
	if code != 0 {
		e.t.Errorf("the daemon exited with status %d after a clean disconnect", code)
	}
	if err := e.d.CheckNoCrash(); err != nil {
		e.t.Error(err)
	}
}

// closedWith checks the outcome of a protocol violation: the back-end
// closes the connection, the daemon exits (0 or 1) without a crash, and its
// log matches wantLog.
func (e *env) closedWith(wantLog string) {
	e.t.Helper()
	if err := e.f.Conn.WaitClosed(timeout); err != nil {
		e.t.Fatalf("after the protocol violation: %v", err)
	}
	code, err := e.d.Wait(timeout)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.d.CheckNoCrash(); err != nil {
		e.t.Fatal(err)
	}
	if code != 0 && code != 1 {
		e.t.Errorf("the daemon exited with status %d, want 0 or 1", code)
	}
	out := strings.TrimSpace(e.d.Output())
	e.t.Logf("exit status %d, last line of the log: %s", code, out[strings.LastIndexByte(out, '\n')+1:])
	if !regexp.MustCompile(wantLog).MatchString(out) {
		e.t.Errorf("the daemon's log does not match %q", wantLog)
	}
}

// waitLog waits until the daemon's output matches re.
func (e *env) waitLog(re string) {
	e.t.Helper()
	if err := e.d.WaitOutput(regexp.MustCompile(re), timeout); err != nil {
		e.t.Fatal(err)
	}
}

// errnoOf returns the errno of a FUSE error reply, or 0.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

// headTail returns the first head and last tail lines of s.
func headTail(s string, head, tail int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= head+tail {
		return s
	}
	return strings.Join(lines[:head], "") +
		fmt.Sprintf("[... %d lines ...]\n", len(lines)-head-tail) +
		strings.Join(lines[len(lines)-tail:], "")
}
