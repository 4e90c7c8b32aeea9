package tests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// fsType is the file system type a ferryfs mount shows in /proc/self/mountinfo.
	fsType = "fuse.ferryfs"
	// mountTimeout bounds how long we wait for a started daemon to mount.
	mountTimeout = 10 * time.Second
	// exitTimeout bounds how long we wait for a signalled daemon to exit.
	exitTimeout = 15 * time.Second
	// requireEnv, when "1", turns the root and /dev/fuse skips into failures.
	requireEnv = "FERRYFS_REQUIRE_MOUNT_TESTS"
)

var (
	// ferryfsBin is the daemon binary TestMain built for this test binary.
	ferryfsBin string
	// raceEnabled is set by race_test.go when the tests run with -race; the
	// daemon is then built with -race as well.
	raceEnabled bool
)

// TestMain builds the ferryfs binary once, into a temporary directory that is
// removed when the tests end.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "ferryfs-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tests: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	ferryfsBin = filepath.Join(tmp, "ferryfs")
	if err := buildDaemon(ferryfsBin); err != nil {
		fmt.Fprintf(os.Stderr, "tests: building the ferryfs binary: %v\n", err)
		return 1
	}
	return m.Run()
}

// buildDaemon runs `go build -o out ./cmd/ferryfs` in the module root.
func buildDaemon(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, statErr := os.Stat(goBin); statErr != nil {
			return fmt.Errorf("no go command in PATH: %w", err)
		}
	}
	gomod, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || root == "." {
		return errors.New("go env GOMOD: not inside the ferryfs module")
	}
	args := []string{"build", "-o", out}
	if raceEnabled {
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

// daemonEnv is the environment the daemon runs with: ours, plus (unless
// GORACE is set) a race-detector exit delay of 50 ms instead of 1 s, which
// would otherwise add a second to every one of the ~150 daemon runs.
func daemonEnv() []string {
	env := os.Environ()
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, "GORACE=atexit_sleep_ms=50")
	}
	return env
}

// requireMountEnv skips the test unless it runs as root with /dev/fuse, or
// fails it instead when FERRYFS_REQUIRE_MOUNT_TESTS=1.
func requireMountEnv(t *testing.T) {
	t.Helper()
	var reason string
	if os.Geteuid() != 0 {
		reason = "needs root: ferryfs mounts with mount(2) itself"
	} else if _, err := os.Stat("/dev/fuse"); err != nil {
		reason = fmt.Sprintf("needs /dev/fuse: %v", err)
	}
	if reason == "" {
		return
	}
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("%s (and %s=1 forbids skipping)", reason, requireEnv)
	}
	t.Skip(reason)
}

// tailBuffer is a concurrency-safe io.Writer keeping the last max bytes.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
	cut bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-b.max:]...)
		b.cut = true
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return "[... earlier output dropped ...]\n" + string(b.buf)
	}
	return string(b.buf)
}

// daemon is a running `ferryfs mount`.
type daemon struct {
	cmd     *exec.Cmd
	mnt     string
	output  *tailBuffer // stdout and stderr
	done    chan struct{}
	waitErr error // valid once done is closed
	stopped bool  // stop has run
}

// exited reports whether the daemon process has exited.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// startDaemon starts `ferryfs mount --shared-dir src mnt flags...` and
// waits until mnt shows up in /proc/self/mountinfo as a ferryfs mount.
// Stopping it (SIGTERM, checking a clean exit and unmount) is registered as
// a cleanup; stop does it earlier with another signal.
func startDaemon(t *testing.T, src, mnt string, flags ...string) *daemon {
	t.Helper()
	args := append([]string{"mount", "--shared-dir", src, mnt}, flags...)
	d := &daemon{
		cmd:    exec.Command(ferryfsBin, args...),
		mnt:    mnt,
		output: &tailBuffer{max: 256 << 10},
		done:   make(chan struct{}),
	}
	d.cmd.Stdout = d.output
	d.cmd.Stderr = d.output
	d.cmd.Env = daemonEnv()
	// If the test binary dies, the daemon gets SIGTERM and unmounts.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", ferryfsBin, err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() { d.stop(t, syscall.SIGTERM) })

	deadline := time.Now().Add(mountTimeout)
	for {
		mounted, err := isFerryfsMount(mnt)
		if err != nil {
			t.Fatalf("reading mountinfo: %v", err)
		}
		if mounted {
			return d
		}
		if d.exited() {
			t.Fatalf("ferryfs %s exited before mounting (%v); output:\n%s",
				strings.Join(args, " "), d.waitErr, d.output)
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferryfs %s: %s not mounted as %s after %v; output:\n%s",
				strings.Join(args, " "), mnt, fsType, mountTimeout, d.output)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends sig to the daemon, waits for it to exit and fails the test
// unless it exited with status 0, left no mount behind and reported no data
// race. As a last resort it kills the daemon and detaches the mount. It is a
// no-op the second time.
func (d *daemon) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if d.stopped {
		return
	}
	d.stopped = true
	if !d.exited() {
		if err := d.cmd.Process.Signal(sig); err != nil {
			t.Errorf("sending %v to the daemon: %v", sig, err)
		}
	}
	select {
	case <-d.done:
	case <-time.After(exitTimeout):
		t.Errorf("daemon did not exit within %v of %v; killing it", exitTimeout, sig)
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	if d.waitErr != nil {
		t.Errorf("daemon exit after %v: got %v, want exit status 0", sig, d.waitErr)
	}
	if strings.Contains(d.output.String(), "WARNING: DATA RACE") {
		t.Errorf("the race detector found a data race in the daemon")
	}
	if mounted, err := isFerryfsMount(d.mnt); err != nil {
		t.Errorf("reading mountinfo: %v", err)
	} else if mounted {
		t.Errorf("%s is still mounted after the daemon exited; detaching it", d.mnt)
		if err := unix.Unmount(d.mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("umount -l %s: %v", d.mnt, err)
		}
	}
	if t.Failed() {
		t.Logf("daemon output:\n%s", d.output)
	}
}

// startMount mounts a fresh temporary shared directory at a fresh temporary
// mount point with the given extra flags and returns both paths. The mount
// is torn down (and its clean exit checked) when the test ends.
func startMount(t *testing.T, flags ...string) (src, mnt string) {
	t.Helper()
	src, mnt, _ = startMountDaemon(t, flags...)
	return src, mnt
}

// startMountDaemon is startMount that also returns the daemon.
func startMountDaemon(t *testing.T, flags ...string) (src, mnt string, d *daemon) {
	t.Helper()
	requireMountEnv(t)
	src = t.TempDir()
	mnt = t.TempDir()
	d = startDaemon(t, src, mnt, flags...)
	return src, mnt, d
}

// isFerryfsMount reports whether path is the mount point of a ferryfs mount
// in /proc/self/mountinfo.
func isFerryfsMount(path string) (bool, error) {
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		if unescapeMountinfo(fields[4]) == path && fields[sep+1] == fsType {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, ...) of a
// mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cmdResult is the outcome of a ferryfs run that is expected to end by itself.
type cmdResult struct {
	stdout, stderr string
	exitCode       int // -1 when killed by a signal or the timeout
}

// runFerryfs runs the ferryfs binary with args to completion (at most 30 s).
func runFerryfs(t *testing.T, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryfsBin, args...)
	cmd.Env = daemonEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cmdResult{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.exitCode = exitErr.ExitCode()
	default:
		t.Fatalf("running ferryfs %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("ferryfs %s did not exit within 30 s; output:\n%s%s",
			strings.Join(args, " "), res.stdout, res.stderr)
	}
	return res
}

// tmpfsDir mounts a fresh tmpfs on a temporary directory, unmounted when the
// test ends (after any daemon started later has stopped).
func tmpfsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=256m,mode=0755"); err != nil {
		t.Fatalf("mounting tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting tmpfs %s: %v", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}
