package fusedev

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// Handler serves FUSE requests. *fuseproto.Server implements it; fusedev
// depends on nothing else of it.
type Handler interface {
	// HandleRequest serves the request in the concatenation of in, writes
	// the reply into out and returns its length, 0 for no reply.
	HandleRequest(in, out [][]byte) int
	// RequestBufferSize is the size of a buffer that holds any request.
	RequestBufferSize() int
	// ReplyBufferSize is the size of a buffer that holds any reply.
	ReplyBufferSize() int
}

// ErrClosed is returned by Serve on a closed Conn.
var ErrClosed = errors.New("fusedev: connection closed")

// Serve serves requests from the kernel with h in the given number of
// workers (at least one) until the file system is unmounted, by Unmount or by
// anyone else, or Close is called; then it returns nil. It returns an error
// only if /dev/fuse fails in a way that ends the connection. Serve may be
// called once per Conn.
//
// Each worker owns one request and one reply buffer, so at most workers
// requests are served at a time. The kernel's first request is FUSE_INIT,
// which h answers like any other.
func (c *Conn) Serve(h Handler, workers int) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.served:
		c.mu.Unlock()
		return errors.New("fusedev: Serve called twice")
	}
	c.served = true
	c.serving.Add(1)
	c.mu.Unlock()
	defer c.serving.Done()

	workers = max(workers, 1)
	c.log.Debug("serving FUSE requests", "mountpoint", c.mountpoint, "workers", workers)
	errs := make(chan error, workers)
	rawsys.AddProcs(workers) // the handler serves with raw system calls
	defer rawsys.AddProcs(-workers)
	for range workers {
		go func() { errs <- c.work(h) }()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
			c.stop() // the others would go on serving a broken connection
		}
	}
	return first
}

// work is one worker's loop. Workers wait in poll(2) on both /dev/fuse and the
// stop eventfd; every waiting worker wakes for a request, one of them reads
// it and the others get EAGAIN and wait again. A worker blocked in read(2)
// instead could not be stopped until the kernel ends the connection, which
// it does not while a lazily detached mount is still in use.
func (c *Conn) work(h Handler) error {
	req := make([]byte, h.RequestBufferSize())
	reply := make([]byte, h.ReplyBufferSize())
	fds := []unix.PollFd{
		{Fd: int32(c.fd), Events: unix.POLLIN},
		{Fd: int32(c.stopFd), Events: unix.POLLIN},
	}
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("poll /dev/fuse: %w", err)
		}
		if fds[1].Revents != 0 {
			return nil
		}
		// POLLIN or, once the connection is gone, POLLERR: read tells.
		n, err := unix.Read(c.fd, req)
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOENT):
			// The request was interrupted before we could read it.
			continue
		case errors.Is(err, unix.ENODEV):
			// Unmounted: the kernel has ended the connection.
			return nil
		default:
			return fmt.Errorf("read /dev/fuse: %w", err)
		}

		m := h.HandleRequest([][]byte{req[:n]}, [][]byte{reply})
		if m <= 0 {
			continue
		}
		if m > len(reply) {
			c.log.Error("FUSE reply longer than the reply buffer, dropped", "len", m, "buffer", len(reply))
			continue
		}
		if _, err := unix.Write(c.fd, reply[:m]); err != nil {
			switch {
			case errors.Is(err, unix.ENOENT):
				// The request was interrupted and has been
				// answered already; the kernel drops our reply.
			case errors.Is(err, unix.ENODEV):
				return nil
			default:
				// The kernel rejected this reply (EINVAL for a
				// malformed one); the connection is still good.
				c.log.Warn("write FUSE reply", "len", m, "err", err)
			}
		}
	}
}
