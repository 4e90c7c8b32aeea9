package vhostfront

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildDaemon builds the ferryfs binary (./cmd/ferryfs of the module
// holding the current directory) into out, with -race when this test
// binary was built with -race (RaceEnabled), so a data race in the daemon
// fails the test too.
func BuildDaemon(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, serr := os.Stat(goBin); serr != nil {
			return fmt.Errorf("no go command: %w", err)
		}
	}
	gomod, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	args := []string{"build", "-o", out}
	if RaceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/ferryfs")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, output)
	}
	return nil
}

// DaemonOptions say how to run the daemon.
type DaemonOptions struct {
	Binary     string // the ferryfs binary
	SocketPath string // --socket-path
	SharedDir  string // --shared-dir
	// LogLevel is --log-level; "" means "info".
	LogLevel string
	// Args are more command-line arguments.
	Args []string
	// Output, when set, receives a copy of the daemon's stderr and stdout
	// as they come (t.Output() or os.Stderr when diagnosing).
	Output io.Writer
}

// Daemon is a running ferryfs process.
type Daemon struct {
	Cmd        *exec.Cmd
	SocketPath string

	out     *logBuffer
	done    chan struct{}
	waitErr error
}

// StartDaemon starts ferryfs --socket-path --shared-dir. It dies with the
// test process (SIGKILL as parent-death signal).
func StartDaemon(opts DaemonOptions) (*Daemon, error) {
	level := opts.LogLevel
	if level == "" {
		level = "info"
	}
	args := append([]string{"--socket-path=" + opts.SocketPath, "--shared-dir=" + opts.SharedDir, "--log-level=" + level}, opts.Args...)
	d := &Daemon{
		Cmd:        exec.Command(opts.Binary, args...),
		SocketPath: opts.SocketPath,
		out:        &logBuffer{tee: opts.Output},
		done:       make(chan struct{}),
	}
	d.Cmd.Stdout = d.out
	d.Cmd.Stderr = d.out
	if RaceEnabled && os.Getenv("GORACE") == "" {
		// The race runtime sleeps a second at exit by default (for
		// other threads to report); tests start many daemons.
		d.Cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=100")
	}
	d.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", opts.Binary, err)
	}
	go func() {
		d.waitErr = d.Cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// Dial waits (bounded polling, at most timeout) until the daemon listens and
// connects to it.
func (d *Daemon) Dial(timeout time.Duration) (*Conn, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := Dial(d.SocketPath)
		if err == nil {
			return c, nil
		}
		if d.Exited() {
			return nil, fmt.Errorf("the daemon exited before listening (%v); output:\n%s", d.waitErr, d.Output())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect to the daemon after %v: %w; output:\n%s", timeout, err, d.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Exited reports whether the process has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Wait waits at most timeout for the process to exit and returns its exit
// code (-1 with an error when it was killed by a signal or did not exit).
func (d *Daemon) Wait(timeout time.Duration) (int, error) {
	select {
	case <-d.done:
	case <-time.After(timeout):
		return -1, fmt.Errorf("the daemon did not exit within %v: %w", timeout, ErrTimeout)
	}
	return d.ExitCode()
}

// ExitCode returns the exit code of an exited daemon.
func (d *Daemon) ExitCode() (int, error) {
	if !d.Exited() {
		return -1, errors.New("the daemon is still running")
	}
	st := d.Cmd.ProcessState
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, fmt.Errorf("the daemon was killed by %v", ws.Signal())
	}
	return st.ExitCode(), nil
}

// Kill kills the process (if it still runs) and waits for it.
func (d *Daemon) Kill() {
	if !d.Exited() {
		d.Cmd.Process.Kill()
		<-d.done
	}
}

// Output returns everything the daemon wrote so far.
func (d *Daemon) Output() string { return d.out.String() }

// WaitOutput waits (bounded polling) until the daemon's output matches re,
// or it exits, or timeout passes.
func (d *Daemon) WaitOutput(re *regexp.Regexp, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if re.MatchString(d.Output()) {
			return nil
		}
		if d.Exited() {
			if re.MatchString(d.Output()) {
				return nil
			}
			return fmt.Errorf("the daemon exited without logging %q", re)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the daemon did not log %q within %v: %w", re, timeout, ErrTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// crashMarks are what a Go program prints when it crashes or, built with
// -race, finds a data race; and what ferryfs logs when it recovers from a
// panic serving a request.
var crashMarks = []string{"panic:", "goroutine ", "fatal error:", "WARNING: DATA RACE", "SIGSEGV", "SIGBUS",
	"panic serving FUSE request"}

// CheckNoCrash returns an error when the daemon's output shows a panic, a
// runtime fatal error or a data race, or when its exit code (if it exited)
// is 2 (an unrecovered panic) or 66 (the race detector's). The error quotes
// the lines of the output around the first sign of a crash.
func (d *Daemon) CheckNoCrash() error {
	out := d.Output()
	for _, m := range crashMarks {
		if i := strings.Index(out, m); i >= 0 {
			return fmt.Errorf("the daemon's output shows %q:\n%s", m, excerpt(out, i))
		}
	}
	if d.Exited() {
		code, err := d.ExitCode()
		if err != nil {
			return err
		}
		if code == 2 || code == 66 {
			return fmt.Errorf("the daemon exited with status %d", code)
		}
	}
	return nil
}

// excerpt returns a few lines of out before offset i and some 40 after.
func excerpt(out string, i int) string {
	start := i
	for n := 0; start > 0 && n < 3; n++ {
		start = strings.LastIndexByte(out[:start-1], '\n') + 1
		if start <= 0 {
			start = 0
			break
		}
	}
	end := i
	for n := 0; n < 40 && end < len(out); n++ {
		k := strings.IndexByte(out[end:], '\n')
		if k < 0 {
			end = len(out)
			break
		}
		end += k + 1
	}
	return out[start:end]
}

// logBuffer collects the daemon's output (safe for concurrent use).
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
	tee io.Writer
}

// maxLog bounds what is kept of the output: its first and last halves.
const maxLog = 4 << 20

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > maxLog {
		keep := append([]byte(nil), b.buf[:maxLog/2]...)
		keep = append(keep, "\n[... output dropped ...]\n"...)
		b.buf = append(keep, b.buf[len(b.buf)-maxLog/2:]...)
	}
	if b.tee != nil {
		b.tee.Write(p)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
