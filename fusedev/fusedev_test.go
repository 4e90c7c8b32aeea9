package fusedev

import (
	"bufio"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FUSE wire constants the responder needs (include/uapi/linux/fuse.h).
const (
	opGetattr     = 3
	opForget      = 2
	opInit        = 26
	opInterrupt   = 36
	opBatchForget = 42

	inHeaderLen  = 40
	outHeaderLen = 16
	initOutLen   = 64
	attrOutLen   = 104
	maxWrite     = 64 << 10
)

// responder is a minimal FUSE file system, written against the wire format
// directly: an empty root directory. It answers INIT and GETATTR and fails
// everything else with ENOSYS.
type responder struct {
	mu  sync.Mutex
	ops map[uint32]int
}

func (r *responder) RequestBufferSize() int { return maxWrite + 4096 }
func (r *responder) ReplyBufferSize() int   { return maxWrite + 4096 }

func (r *responder) seen(op uint32) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[op]
}

func (r *responder) HandleRequest(in, out [][]byte) int {
	req, reply := in[0], out[0]
	if len(req) < inHeaderLen {
		return 0
	}
	le := binary.LittleEndian
	op := le.Uint32(req[4:])
	unique := le.Uint64(req[8:])
	r.mu.Lock()
	if r.ops == nil {
		r.ops = make(map[uint32]int)
	}
	r.ops[op]++
	r.mu.Unlock()

	var errno syscall.Errno
	body := reply[outHeaderLen:outHeaderLen]
	switch op {
	case opForget, opBatchForget, opInterrupt:
		return 0
	case opInit:
		arg := req[inHeaderLen:]
		body = reply[outHeaderLen : outHeaderLen+initOutLen]
		clear(body)
		le.PutUint32(body[0:], 7)                  // major
		le.PutUint32(body[4:], 31)                 // minor: no optional features
		le.PutUint32(body[8:], le.Uint32(arg[8:])) // max_readahead
		le.PutUint32(body[20:], maxWrite)          // max_write
	case opGetattr:
		body = reply[outHeaderLen : outHeaderLen+attrOutLen]
		clear(body)
		le.PutUint64(body[0:], 1)                      // attr_valid
		le.PutUint64(body[16:], 1)                     // ino
		le.PutUint32(body[16+60:], unix.S_IFDIR|0o755) // mode
		le.PutUint32(body[16+64:], 2)                  // nlink
		le.PutUint32(body[16+80:], 4096)               // blksize
	default:
		errno = syscall.ENOSYS
	}
	n := outHeaderLen + len(body)
	le.PutUint32(reply[0:], uint32(n))
	le.PutUint32(reply[4:], uint32(-int32(errno)))
	le.PutUint64(reply[8:], unique)
	return n
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a FUSE file system needs root (CAP_SYS_ADMIN) and /dev/fuse")
	}
}

// mountinfoType returns the file system type mounted at dir according to
// /proc/self/mountinfo, "" if nothing is.
func mountinfoType(t *testing.T, dir string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	typ := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[4] != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				typ = fields[i+1] // the last entry for dir is the visible one
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return typ
}

// mountAndServe mounts a responder on a fresh directory and serves it. The
// cleanup detaches the mount if a test left it behind, before the temporary
// directory is removed (removing it through an unserved mount would hang).
func mountAndServe(t *testing.T) (*Conn, *responder, string, <-chan error) {
	t.Helper()
	dir := t.TempDir()
	c, err := Mount(dir, MountOptions{})
	if err != nil {
		t.Fatalf("Mount(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		unix.Unmount(dir, unix.MNT_DETACH)
		c.Close()
	})
	r := &responder{}
	done := make(chan error, 1)
	go func() { done <- c.Serve(r, 2) }()
	return c, r, dir, done
}

func waitServe(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the file system was unmounted")
	}
}

func TestMountServeUnmount(t *testing.T) {
	requireRoot(t)
	c, r, dir, done := mountAndServe(t)

	if got := mountinfoType(t, dir); got != fsType {
		t.Fatalf("mount type at %s = %q, want %q", dir, got, fsType)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("stat mount point: %v", err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("mount point mode = %v, want drwxr-xr-x", fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Ino != 1 {
		t.Errorf("mount point inode = %d, want 1", st.Ino)
	}
	if r.seen(opInit) != 1 || r.seen(opGetattr) == 0 {
		t.Errorf("saw %d INIT and %d GETATTR requests, want 1 and at least 1", r.seen(opInit), r.seen(opGetattr))
	}

	if err := c.Unmount(); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	waitServe(t, done)
	if got := mountinfoType(t, dir); got != "" {
		t.Errorf("after Unmount, %s is still mounted (%s)", dir, got)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Serve(r, 1); err != ErrClosed {
		t.Errorf("Serve after Close = %v, want ErrClosed", err)
	}
}

func TestExternalUnmount(t *testing.T) {
	requireRoot(t)
	c, _, dir, done := mountAndServe(t)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("stat mount point: %v", err)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatalf("umount %s: %v", dir, err)
	}
	waitServe(t, done)
	// Unmounting what is gone already is not an error.
	if err := c.Unmount(); err != nil {
		t.Errorf("Unmount after external unmount: %v", err)
	}
}

func TestUnmountBusy(t *testing.T) {
	requireRoot(t)
	c, _, dir, done := mountAndServe(t)
	// An O_PATH descriptor keeps the mount busy without a FUSE request.
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := c.Unmount(); err != nil {
		t.Fatalf("Unmount of a busy mount: %v", err)
	}
	waitServe(t, done)
	if got := mountinfoType(t, dir); got != "" {
		t.Errorf("after Unmount, %s is still mounted (%s)", dir, got)
	}
}

func TestCloseStopsServe(t *testing.T) {
	requireRoot(t)
	c, _, dir, done := mountAndServe(t)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("stat mount point: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitServe(t, done)
	// The connection is aborted but the mount stays until unmounted.
	if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("stat through an aborted connection: %v, want ENOTCONN", err)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Errorf("umount after Close: %v", err)
	}
}

func TestMountPointErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing"), "mount point " + filepath.Join(dir, "missing") + " does not exist"},
		{"file", file, "mount point " + file + " is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Mount(tt.path, MountOptions{})
			if err == nil {
				c.Unmount()
				c.Close()
				t.Fatalf("Mount(%s) succeeded", tt.path)
			}
			if err.Error() != tt.want {
				t.Errorf("Mount(%s) error = %q, want %q", tt.path, err, tt.want)
			}
		})
	}
}
