package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Daemon is a vhost-user-fs back-end the harness can start: it serves
// run.SharedDir on the vhost-user socket at socket (a host path inside
// run.Dir). Start returns once the daemon listens on the socket, so QEMU
// can connect at once.
type Daemon interface {
	// Name identifies the daemon in logs and file names.
	Name() string
	Start(t testing.TB, run *Run, socket string) (*Process, error)
}

// Timeouts of a daemon's life. They bound polling and waiting; nothing
// depends on them for correctness.
const (
	// listenTimeout bounds the wait for a starting daemon's socket.
	listenTimeout = 30 * time.Second
	// exitGrace is how long a daemon gets to exit on its own after QEMU
	// has gone (both virtiofsd and ferryfs exit when the front-end
	// disconnects), and then again after SIGTERM.
	exitGrace = 10 * time.Second
)

// Process is a started daemon.
type Process struct {
	name string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{} // closed when the process has been waited for
	err  error         // cmd.Wait's result, set before done closes

	stopOnce sync.Once
	stopErr  error
	signaled string // the signal Stop had to send, if any
}

// startProcess starts cmd with its output collected, and a goroutine that
// waits for it. The process is stopped when t ends.
func startProcess(t testing.TB, name string, cmd *exec.Cmd) (*Process, error) {
	p := &Process{name: name, cmd: cmd, log: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop() })
	return p, nil
}

// Name returns the daemon's name.
func (p *Process) Name() string { return p.name }

// Pid returns the daemon's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Log returns what the daemon has printed so far.
func (p *Process) Log() string { return p.log.String() }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the daemon: it waits exitGrace for it to exit by itself (a
// daemon exits once QEMU has disconnected), then sends SIGTERM and waits
// again, then SIGKILL. It returns an error if the daemon exited with a
// failure status or had to be signalled; the error says which. Calling it
// again returns the same result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Process) stop() error {
	for _, sig := range []syscall.Signal{0, syscall.SIGTERM, syscall.SIGKILL} {
		if sig != 0 {
			p.signaled = sig.String()
			// The process may exit between the check and the signal;
			// Signal then fails harmlessly.
			_ = p.cmd.Process.Signal(sig)
		}
		select {
		case <-p.done:
			if p.signaled != "" {
				return fmt.Errorf("%s did not exit by itself within %s and was sent %s (wait: %v)", p.name, exitGrace, p.signaled, p.err)
			}
			if p.err != nil {
				return fmt.Errorf("%s: %w", p.name, p.err)
			}
			return nil
		case <-time.After(exitGrace):
		}
	}
	<-p.done
	return fmt.Errorf("%s survived SIGTERM and was killed", p.name)
}

// CPUTime returns the user plus system CPU time the daemon has used,
// including its waited-for children. After the daemon has exited it comes
// from wait4's rusage; before, from /proc/PID/stat.
func (p *Process) CPUTime() (time.Duration, error) {
	if p.Exited() {
		st := p.cmd.ProcessState
		if st == nil {
			return 0, fmt.Errorf("%s: no process state", p.name)
		}
		return st.UserTime() + st.SystemTime(), nil
	}
	return procCPUTime(p.Pid())
}

// Rusage returns the resource usage of the daemon and its waited-for
// children, nil before it has exited.
func (p *Process) Rusage() *syscall.Rusage {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return nil
	}
	ru, _ := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return ru
}

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, which is 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPUTime sums utime, stime, cutime and cstime from /proc/PID/stat.
func procCPUTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading CPU time: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// count fields after its closing parenthesis. utime is field 14.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
	}
	fields := strings.Fields(string(data[i+1:]))
	const utime = 14 - 3 // field 3 (state) is fields[0]
	if len(fields) < utime+4 {
		return 0, fmt.Errorf("short /proc/%d/stat: %q", pid, data)
	}
	var ticks int64
	for _, f := range fields[utime : utime+4] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// waitListening polls /proc/net/unix until a socket bound to path (as the
// daemon named it) is listening, failing early if the daemon exits. It never
// connects: a vhost-user back-end serves the first connection it accepts
// and may exit when that connection closes.
func waitListening(ctx context.Context, p *Process, path string) error {
	ctx, cancel := context.WithTimeout(ctx, listenTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := unixListening(path)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before listening on %s: %v\n%s", p.name, path, p.err, p.Log())
		case <-ctx.Done():
			return fmt.Errorf("%s is not listening on %s after %s\n%s", p.name, path, listenTimeout, p.Log())
		case <-tick.C:
		}
	}
}

// soAcceptCon is the __SO_ACCEPTCON flag /proc/net/unix shows for
// listening sockets.
const soAcceptCon = 1 << 16

// unixListening reports whether /proc/net/unix lists a listening socket
// bound to path.
func unixListening(path string) (bool, error) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return false, fmt.Errorf("reading the list of unix sockets: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header: Num RefCount Protocol Flags Type St Inode Path
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[7] != path {
			continue
		}
		flags, err := strconv.ParseUint(fields[3], 16, 32)
		if err == nil && flags&soAcceptCon != 0 {
			return true, nil
		}
	}
	return false, sc.Err()
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
