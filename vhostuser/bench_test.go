package vhostuser_test

import (
	"log/slog"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/tests/vhostfront"
	"github.com/ferryfs/ferryfs/vhostuser"
	"github.com/ferryfs/ferryfs/virtqueue"
)

// echoDevice copies what a chain offers into what it allows.
type echoDevice struct{}

func (echoDevice) Features() uint64 { return 0 }
func (echoDevice) Queues() int      { return 2 }
func (echoDevice) Config() []byte   { return nil }
func (echoDevice) Reset()           {}

func (echoDevice) Serve(q int, c *virtqueue.Chain) uint32 {
	n := 0
	for _, r := range c.Readable {
		for _, w := range c.Writable {
			n += copy(w, r)
			break
		}
	}
	return uint32(n)
}

// startInProcess serves dev on one end of a socketpair in this process and
// returns a front-end set up on the other end, with queue 1 started.
func startInProcess(tb testing.TB, dev vhostuser.Device, opts vhostuser.Options, front vhostfront.Options) (*vhostfront.Frontend, *vhostfront.Queue, <-chan error) {
	tb.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	be := vhostuser.New(dev, opts)
	done := make(chan error, 1)
	go func() { done <- be.Serve(sp[1]) }()
	f, err := vhostfront.NewFrontend(vhostfront.NewConn(sp[0]), front)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		f.Close()
		<-done
	})
	if err := f.Setup(); err != nil {
		tb.Fatal(err)
	}
	q, err := f.StartQueue(1, 256)
	if err != nil {
		tb.Fatal(err)
	}
	return f, q, done
}

// BenchmarkRoundTrip is one request at a time through the kick poller (no
// workers, as the daemon runs by default) or a worker pool: the driver's
// side costs as much as the device's, so differences in the back-end's
// per-request path show up diluted, but allocations show exactly.
func BenchmarkRoundTrip(b *testing.B) {
	for _, workers := range []int{0, 2} {
		b.Run(map[int]string{0: "poller", 2: "workers"}[workers], func(b *testing.B) {
			_, q, _ := startInProcess(b, echoDevice{}, vhostuser.Options{Workers: workers}, vhostfront.Options{})
			req := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				sub, err := q.Submit([][]byte{req}, []int{64}, vhostfront.ChainOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := q.Complete(sub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
