package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BootOptions describe one guest run.
type BootOptions struct {
	// Run is the run directory; nil means a fresh one serving SharedDir.
	Run *Run
	// SharedDir is the host directory to serve when Run is nil; "" means
	// a fresh empty one (Run.SharedDir then names it).
	SharedDir string
	// Daemon serves the shared directory. Required.
	Daemon Daemon
	// Files are extra files for the initramfs: guest path -> host path.
	// GuestBinaries returns the guest programs in this form.
	Files map[string]string
	// Commands are shell commands the guest runs in order, each in its own
	// shell, after virtio-fs is mounted on /mnt. A failing command does not
	// stop the next; its exit status is in Result.Commands.
	Commands []string
	// Tag is the virtio-fs tag; default "ferryfs".
	Tag string
	// MemMiB is the guest's memory; default 1024.
	MemMiB int
	// VCPUs is the number of guest CPUs; default 2.
	VCPUs int
	// Timeout bounds the whole guest run, after which QEMU and the daemon
	// are killed; default 10 minutes, shortened to end before the test's
	// deadline.
	Timeout time.Duration
	// KernelArgs are appended to the guest kernel's command line.
	KernelArgs string
	// QMPSocket, if set, is a host path in the run directory on which QEMU
	// serves QMP (-qmp unix:...,server=on,wait=off), e.g. for migration.
	QMPSocket string
	// HostQEMU runs the host's QEMU (Assets.HostQEMU, bookworm's 7.2)
	// instead of the chroot's QEMU 10.
	HostQEMU bool
	// QEMUArgs are extra QEMU arguments (paths as the chroot sees them).
	QEMUArgs []string
	// Incoming starts QEMU as a migration destination (-incoming defer):
	// the guest arrives through Machine.MigrateFrom, already booted and
	// mounted, so its console starts mid-run.
	Incoming bool
	// Console, if set, also receives the serial console as it arrives.
	// FERRYFS_E2E_CONSOLE=1 sends it to stderr.
	Console io.Writer
}

// Machine is a running guest, from Start.
type Machine struct {
	t       testing.TB
	Run     *Run
	Daemon  *Process
	opts    BootOptions
	proc    *Process // QEMU
	console *lockedBuffer
	start   time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	copied  chan struct{} // closed when the console pipe is drained
}

// Boot runs a guest to completion: Start then Wait. The error reports a
// guest that could not run its commands to the end (QEMU failure, /init
// failure, timeout); the commands' own outcomes are in the Result. On test
// failure the console and the daemon's log are logged.
func Boot(t testing.TB, opts BootOptions) (*Result, error) {
	t.Helper()
	m, err := Start(t, opts)
	if err != nil {
		return nil, err
	}
	return m.Wait()
}

// Start builds the initramfs, starts the daemon and starts QEMU, and
// returns without waiting for the guest.
func Start(t testing.TB, opts BootOptions) (*Machine, error) {
	t.Helper()
	if opts.Daemon == nil {
		return nil, errors.New("BootOptions.Daemon is required")
	}
	setDefaults(t, &opts)
	run := opts.Run
	if run == nil {
		run = NewRun(t, LoadAssets(t), opts.SharedDir)
	}
	a := run.Assets

	initrd := run.Path("initramfs.cpio.gz")
	ir := initramfs{assets: a, tag: opts.Tag, files: opts.Files, cmds: opts.Commands}
	if err := ir.write(initrd); err != nil {
		return nil, err
	}
	kernel := run.Path("vmlinuz")
	if err := linkOrCopy(a.Kernel, kernel); err != nil {
		return nil, err
	}

	socket := run.Path(opts.Daemon.Name() + ".sock")
	daemon, err := opts.Daemon.Start(t, run, socket)
	if err != nil {
		return nil, err
	}

	qemu, path := a.QEMU, run.ChrootPath
	if opts.HostQEMU {
		if a.HostQEMU == "" {
			return nil, errors.New("no host QEMU among the assets (HOST_QEMU)")
		}
		qemu, path = a.HostQEMU, func(p string) (string, error) { return p, nil }
	}
	args, err := qemuArgs(path, &opts, socket, kernel, initrd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	var cmd *exec.Cmd
	if opts.HostQEMU {
		cmd = exec.CommandContext(ctx, qemu, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	} else {
		cmd = run.Command(ctx, append([]string{qemu}, args...)...)
	}
	// The console is read from a pipe of our own rather than
	// cmd.StdoutPipe, which cmd.Wait (in another goroutine) may close
	// before the last of the console has been read.
	consoleR, consoleW, err := os.Pipe()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("QEMU console pipe: %w", err)
	}
	cmd.Stdout = consoleW
	m := &Machine{t: t, Run: run, Daemon: daemon, opts: opts, console: &lockedBuffer{},
		ctx: ctx, cancel: cancel, copied: make(chan struct{})}
	m.start = time.Now()
	proc, err := startQEMU(t, cmd)
	consoleW.Close() // QEMU holds the write end now; EOF comes when it exits
	if err != nil {
		consoleR.Close()
		cancel()
		return nil, err
	}
	m.proc = proc
	go m.copyConsole(consoleR)
	t.Logf("started QEMU (pid %d, timeout %s): %s %s", proc.Pid(), opts.Timeout, qemu, strings.Join(args, " "))
	return m, nil
}

// startQEMU starts cmd, whose stdout is already the console pipe, with its
// stderr collected in the Process log.
func startQEMU(t testing.TB, cmd *exec.Cmd) (*Process, error) {
	p := &Process{name: "qemu", cmd: cmd, log: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p, nil
}

// copyConsole reads the serial console into the buffer (and opts.Console)
// until QEMU exits.
func (m *Machine) copyConsole(r *os.File) {
	defer close(m.copied)
	defer r.Close()
	var w io.Writer = m.console
	if m.opts.Console != nil {
		w = io.MultiWriter(m.console, m.opts.Console)
	}
	if _, err := io.Copy(w, r); err != nil {
		fmt.Fprintf(m.console, "\n[harness: reading the console failed: %v]\n", err)
	}
}

// Console returns the console output so far.
func (m *Machine) Console() string { return m.console.String() }

// Wait waits for the guest to power off (or the timeout), stops the
// daemon, and returns the parsed result.
func (m *Machine) Wait() (*Result, error) {
	t := m.t
	t.Helper()
	defer m.cancel()
	<-m.proc.done
	<-m.copied
	res := &Result{
		Console: m.console.String(),
		Elapsed: time.Since(m.start),
		// A guest that powered off just as the deadline passed did not
		// time out: only count it if QEMU had to be killed.
		TimedOut: errors.Is(m.ctx.Err(), context.DeadlineExceeded) && m.proc.err != nil,
		QEMUErr:  m.proc.err,
		Daemon:   m.Daemon,
	}
	res.parseConsole(m.opts.Commands)
	if m.opts.Incoming {
		// Booting and mounting happened on the migration source.
		res.Booted, res.Mounted = true, true
	}
	res.DaemonErr = m.Daemon.Stop()
	cpu, err := m.Daemon.CPUTime()
	if err != nil && res.DaemonErr == nil {
		res.DaemonErr = err
	}
	res.DaemonCPU = cpu
	if err := os.WriteFile(m.Run.Path("console.log"), []byte(res.Console), 0o644); err != nil {
		t.Logf("saving the console log: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			res.LogDetails(t)
		}
	})
	t.Logf("guest run took %s; %s used %s of CPU", res.Elapsed.Round(time.Millisecond), m.Daemon.Name(), res.DaemonCPU)
	return res, res.err(m.opts.Timeout, m.proc.Log())
}

// setDefaults fills unset options.
func setDefaults(t testing.TB, o *BootOptions) {
	if o.Tag == "" {
		o.Tag = "ferryfs"
	}
	if o.MemMiB == 0 {
		o.MemMiB = 1024
	}
	if o.VCPUs == 0 {
		o.VCPUs = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	// End before the test binary's own deadline, so a hung guest shows
	// as this run's failure with its console instead of a panic.
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := tt.Deadline(); ok {
			if left := time.Until(d) - 30*time.Second; left > 0 && left < o.Timeout {
				o.Timeout = left
			}
		}
	}
	if o.Console == nil && os.Getenv("FERRYFS_E2E_CONSOLE") == "1" {
		o.Console = os.Stderr
	}
}
