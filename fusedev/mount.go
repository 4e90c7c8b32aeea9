// Package fusedev serves a FUSE request handler on a local kernel mount: it
// mounts a FUSE file system with mount(2) on a /dev/fuse descriptor and runs
// workers that carry requests from that descriptor to the handler and the
// replies back.
//
// It is the transport for "ferryfs mount", which exposes a shared directory
// on the host itself, the same way the virtio-fs daemon exposes it to a
// guest. It needs CAP_SYS_ADMIN: there is no fusermount fallback.
package fusedev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultFsName is the mount source shown in /proc/self/mountinfo when
// MountOptions.FsName is empty.
const DefaultFsName = "ferryfs"

// fsType is "fuse" with a subtype, so that tools can tell a ferryfs mount
// from other FUSE mounts.
const fsType = "fuse.ferryfs"

// Unmount first tries a plain unmount this many times, pausing
// unmountRetryDelay in between, before it detaches the mount lazily: a mount
// point is often busy only for a moment (a shell that has just left it, a
// process exiting).
const (
	unmountRetries    = 5
	unmountRetryDelay = 50 * time.Millisecond
)

// MountOptions configures Mount.
type MountOptions struct {
	// FsName is the mount source shown in /proc/self/mountinfo. Empty means
	// DefaultFsName.
	FsName string
	// ReadOnly mounts read-only (MS_RDONLY), so the kernel refuses writes
	// before they reach the file system.
	ReadOnly bool
	// DefaultPermissions makes the kernel check access against the file
	// mode, owner and (with FUSE_POSIX_ACL) ACLs the file system reports,
	// before a request reaches it, as a guest's virtio-fs mount always
	// does. Without it the file system must check every access itself:
	// a passthrough daemon that opens files with its own identity would
	// let every user of an allow_other mount read and write what the
	// daemon can.
	DefaultPermissions bool
	// Logger receives warnings about the connection. nil means
	// slog.Default().
	Logger *slog.Logger
}

// Conn is a mounted FUSE file system and its /dev/fuse descriptor.
type Conn struct {
	mountpoint string
	fd         int // /dev/fuse, non-blocking; see Serve
	stopFd     int // eventfd that becomes readable when the workers must stop
	log        *slog.Logger

	stopOnce sync.Once
	serving  sync.WaitGroup // held by Serve while its workers may use fd

	mu     sync.Mutex
	served bool
	closed bool
}

// Mount mounts a FUSE file system on mountpoint, an existing directory, and
// returns the connection to serve it on. The kernel queues FUSE_INIT at once;
// nothing touching the mount point (a stat, say) completes until Serve runs.
func Mount(mountpoint string, opts MountOptions) (*Conn, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", mountpoint, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("mount point %s does not exist", mountpoint)
	case err != nil:
		return nil, fmt.Errorf("mount point %s: %w", mountpoint, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("mount point %s is not a directory", mountpoint)
	}

	// Non-blocking, so that a worker woken by poll can find the request
	// taken by another worker (EAGAIN) instead of blocking in read where
	// nothing could stop it.
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/fuse: %w", err)
	}
	stopFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}

	source := opts.FsName
	if source == "" {
		source = DefaultFsName
	}
	// allow_other: the mount is for every user on the host, as a virtio-fs
	// mount is for every user in the guest.
	data := fmt.Sprintf("fd=%d,rootmode=%o,user_id=%d,group_id=%d,allow_other",
		fd, unix.S_IFDIR, os.Getuid(), os.Getgid())
	if opts.DefaultPermissions {
		data += ",default_permissions"
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if opts.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(source, abs, fsType, flags, data); err != nil {
		unix.Close(stopFd)
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("mount %s: mount point busy: %w", abs, err)
		case errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("mount %s: %w (mounting needs CAP_SYS_ADMIN)", abs, err)
		default:
			return nil, fmt.Errorf("mount %s: %w", abs, err)
		}
	}

	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Conn{mountpoint: abs, fd: fd, stopFd: stopFd, log: log}, nil
}

// Mountpoint returns the absolute path the file system is mounted on.
func (c *Conn) Mountpoint() string { return c.mountpoint }

// Unmount unmounts the file system and makes Serve return. Serve should still
// be running while Unmount unmounts: the kernel may write back cached data
// first. A mount point that stays busy is detached lazily (MNT_DETACH); the
// connection is then aborted once Serve has returned and Close is called, so
// files still open on it fail with ENOTCONN. A file system that has already
// been unmounted by someone else is not an error.
func (c *Conn) Unmount() error {
	err := unix.Unmount(c.mountpoint, 0)
	for i := 1; i < unmountRetries && errors.Is(err, unix.EBUSY); i++ {
		time.Sleep(unmountRetryDelay)
		err = unix.Unmount(c.mountpoint, 0)
	}
	if errors.Is(err, unix.EBUSY) {
		c.log.Warn("mount point busy, detaching it", "mountpoint", c.mountpoint)
		err = unix.Unmount(c.mountpoint, unix.MNT_DETACH)
	}
	// EINVAL: no longer a mount point, someone unmounted it already.
	if err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", c.mountpoint, err)
	}
	c.stop()
	return nil
}

// Close stops Serve, waits for it to return and closes the /dev/fuse
// descriptor. If the file system is still mounted, closing the descriptor
// aborts the connection: accesses fail with ENOTCONN until it is unmounted.
// Close is idempotent.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()

	c.stop()
	// The descriptors are closed only once no worker can use them any more,
	// or a worker could write a reply to an unrelated file that reused the
	// descriptor number.
	c.serving.Wait()
	err := unix.Close(c.fd)
	unix.Close(c.stopFd)
	if err != nil {
		return fmt.Errorf("close /dev/fuse: %w", err)
	}
	return nil
}

// stop makes every worker, current and future, return. The eventfd stays
// readable because nobody reads it.
func (c *Conn) stop() {
	c.stopOnce.Do(func() {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		if _, err := unix.Write(c.stopFd, one[:]); err != nil {
			// Cannot happen for a valid eventfd and a count of 1; if
			// it did, workers would still stop when the kernel ends
			// the connection.
			c.log.Error("signal fusedev workers to stop", "err", err)
		}
	})
}
