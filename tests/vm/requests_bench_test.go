package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/tests/vhostfront"
)

// requestWorkload is one kind of request traffic for BenchmarkRequests.
// setup runs once per daemon, before the clock starts; op is one iteration.
type requestWorkload struct {
	name  string
	setup func(c *requestClient) error
	op    func(c *requestClient, i int) error
}

// requestClient is the front-end's FUSE session plus what setup prepared.
type requestClient struct {
	fs   *vhostfront.FUSE
	file uint64 // node of "file", a 64 MiB file
	fh   uint64 // a read-only handle of it
	// out and outFh are a file setup created and its write handle.
	out, outFh uint64
	data       []byte
}

const requestFileSize = 64 << 20

var requestWorkloads = []requestWorkload{
	// write-1m and read-128k are what a guest's sequential 1 MiB writes
	// and reads send: 1 MiB in page-sized descriptors, 128 KiB reads
	// (the guest's read-ahead) into a header and 32 pages.
	{name: "write-1m", setup: func(c *requestClient) error {
		o, err := c.fs.Create(vhostfront.RootID, "out", unix.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		c.out, c.outFh, c.data = o.NodeId, o.Fh, make([]byte, 1<<20)
		c.fs.Chain = vhostfront.ChainOptions{Split: 4096}
		return nil
	}, op: func(c *requestClient, i int) error {
		n, err := c.fs.Write(c.out, c.outFh, uint64(i%64)<<20, c.data)
		if err == nil && n != 1<<20 {
			err = fmt.Errorf("wrote %d bytes, want 1 MiB", n)
		}
		return err
	}},
	{name: "read-128k", op: func(c *requestClient, i int) error {
		r := vhostfront.NewFUSERequest(vhostfront.OpRead, c.file).
			Struct(&fuse.ReadIn{Fh: c.fh, Offset: uint64(i%512) << 17, Size: 128 << 10})
		r.Header.Unique = c.fs.NextUnique()
		writable := []int{16}
		for range 32 {
			writable = append(writable, 4096)
		}
		sub, err := c.fs.Q.Submit([][]byte{r.Encode()}, writable, vhostfront.ChainOptions{})
		if err != nil {
			return err
		}
		out, _, err := c.fs.Q.Complete(sub)
		if err == nil && len(out) != 16+128<<10 {
			err = fmt.Errorf("read reply of %d bytes, want 16+128 KiB", len(out))
		}
		return err
	}},
	{name: "getattr", op: func(c *requestClient, _ int) error {
		_, err := c.fs.GetAttr(c.file)
		return err
	}},
	{name: "lookup", op: func(c *requestClient, _ int) error {
		e, err := c.fs.Lookup(vhostfront.RootID, "file")
		if err != nil {
			return err
		}
		return c.fs.Forget(e.NodeId, 1)
	}},
	// create is what a guest's "echo x > new; rm new" sends.
	{name: "create-unlink", op: func(c *requestClient, i int) error {
		name := "n" + strconv.Itoa(i)
		out, err := c.fs.Create(vhostfront.RootID, name, unix.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := c.fs.Write(out.NodeId, out.Fh, 0, []byte("x\n")); err != nil {
			return err
		}
		if err := c.fs.Release(out.NodeId, out.Fh); err != nil {
			return err
		}
		rep, err := c.fs.Do(vhostfront.NewFUSERequest(vhostfront.OpUnlink, vhostfront.RootID).Name(name))
		if err != nil {
			return err
		}
		if e := rep.Errno(); e != 0 {
			return fmt.Errorf("unlink: %w", e)
		}
		return c.fs.Forget(out.NodeId, 1)
	}},
	{name: "read-4k", op: func(c *requestClient, i int) error {
		off := uint64(i*7919%(requestFileSize/4096)) * 4096
		// A reply buffer of exactly the size asked for, as the guest
		// kernel gives: virtiofsd reads as much as the buffer holds.
		rep, err := c.fs.DoSize(vhostfront.NewFUSERequest(vhostfront.OpRead, c.file).
			Struct(&fuse.ReadIn{Fh: c.fh, Offset: off, Size: 4096}), 16+4096)
		switch {
		case err != nil:
			return err
		case rep.Errno() != 0:
			return fmt.Errorf("read: %w", rep.Errno())
		case len(rep.Payload) != 4096:
			return fmt.Errorf("read %d bytes, want 4096", len(rep.Payload))
		}
		return nil
	}},
}

// BenchmarkRequests measures what one FUSE request costs ferryfs and
// virtiofsd 1.13 in CPU time, without a guest: the test front-end
// (tests/vhostfront) sends one request at a time on a request queue and
// waits for its reply, as a guest process does. It reports the daemon's CPU
// time per iteration (daemon-ns/op, from every thread's schedstat), which,
// unlike a guest under TCG, stays steady from run to run, so it shows
// changes of a few percent. The front-end runs on CPU 0 and the daemon on
// CPU 1.
//
//	go test ./tests/vm -run '^$' -bench Requests -benchtime 20000x
//
// FERRYFS_BENCH_GAP (a duration, default 0) spins that long between
// requests, the way a guest thinks between system calls; FERRYFS_BENCH_FLAGS
// adds flags to the daemons; FERRYFS_BENCH_OTHERS lists more ferryfs
// binaries (comma-separated) to measure too, each named by its file name,
// to compare a change with the code before it in the same run.
func BenchmarkRequests(b *testing.B) {
	RequireVM(b)
	a := LoadAssets(b)
	flags := benchFlags()
	var gap time.Duration
	if s := os.Getenv("FERRYFS_BENCH_GAP"); s != "" {
		var err error
		if gap, err = time.ParseDuration(s); err != nil {
			b.Fatalf("FERRYFS_BENCH_GAP=%q: %v", s, err)
		}
	}
	daemons := []Daemon{Ferryfs{Binary: BuildFerryfs(b), Flags: flags}, Virtiofsd{Flags: flags}}
	daemons = append(daemons, otherFerryfs(flags)...)
	for _, w := range requestWorkloads {
		for _, d := range daemons {
			b.Run(w.name+"/"+d.Name(), func(b *testing.B) { benchRequests(b, a, d, w, gap) })
		}
	}
}

func benchRequests(b *testing.B, a *Assets, d Daemon, w requestWorkload, gap time.Duration) {
	run := NewRun(b, a, "")
	if err := os.WriteFile(filepath.Join(run.SharedDir, "file"), make([]byte, requestFileSize), 0o644); err != nil {
		b.Fatal(err)
	}
	sock := run.Path(d.Name() + ".sock")
	p, err := d.Start(b, run, sock)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop()
	conn, err := vhostfront.Dial(sock)
	if err != nil {
		b.Fatal(err)
	}
	f, err := vhostfront.NewFrontend(conn, vhostfront.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Setup(); err != nil {
		b.Fatalf("%s: %v\n%s", d.Name(), err, p.Log())
	}
	q, err := f.StartQueue(1, 1024)
	if err != nil {
		b.Fatal(err)
	}
	c := &requestClient{fs: vhostfront.NewFUSE(q)}
	c.fs.ReplySize = 8 << 10
	if _, err := c.fs.Init(); err != nil {
		b.Fatalf("%s: INIT: %v", d.Name(), err)
	}
	e, err := c.fs.Lookup(vhostfront.RootID, "file")
	if err != nil {
		b.Fatal(err)
	}
	c.file = e.NodeId
	o, err := c.fs.Open(c.file, unix.O_RDONLY)
	if err != nil {
		b.Fatal(err)
	}
	c.fh = o.Fh
	if w.setup != nil {
		if err := w.setup(c); err != nil {
			b.Fatal(err)
		}
	}
	// Warm up: the first requests fault in the daemon's memory.
	for i := range 100 {
		if err := w.op(c, 1<<30+i); err != nil {
			b.Fatalf("%s: %v\n%s", d.Name(), err, p.Log())
		}
	}
	if runtime.NumCPU() >= 2 {
		// Placement decides the cost of a wake-up (the same CPU, or
		// an idle one to wake) more than either daemon does: without
		// pinning, runs of the same daemon differ by a third.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := pin(0, 0); err != nil {
			b.Fatal(err)
		}
		if err := pinProcess(p.Pid(), 1); err != nil {
			b.Fatal(err)
		}
	}
	before, err := threadsCPU(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := w.op(c, i); err != nil {
			b.Fatalf("%s: %v\n%s", d.Name(), err, p.Log())
		}
		for start := time.Now(); time.Since(start) < gap; {
		}
	}
	b.StopTimer()
	after, err := threadsCPU(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(after-before)/float64(b.N), "daemon-ns/op")
}

// pin binds thread tid (0: the calling thread) to CPU cpu.
func pin(tid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(tid, &set); err != nil {
		return fmt.Errorf("pinning thread %d to CPU %d: %w", tid, cpu, err)
	}
	return nil
}

// pinProcess binds every thread of pid to CPU cpu; threads it starts later
// inherit that.
func pinProcess(pid, cpu int) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := pin(tid, cpu); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	return nil
}

// threadsCPU sums the time every thread of pid has spent on a CPU, in
// nanoseconds (the first field of /proc/PID/task/TID/schedstat). Threads
// that exited are not counted; neither daemon ends threads while serving.
func threadsCPU(pid int) (int64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		fields := strings.Fields(string(data))
		if len(fields) == 0 {
			return 0, fmt.Errorf("%s/%s/schedstat: empty", dir, t.Name())
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		sum += ns
	}
	return sum, nil
}
