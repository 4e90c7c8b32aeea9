package passthrough

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

func TestMayHangBelow(t *testing.T) {
	const mountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /srv/share rw,relatime shared:2 - ext4 /dev/sdb1 rw
31 30 0:41 / /srv/share/data rw - nfs4 server:/export rw
32 22 0:42 / /srv/share2/x rw - fuse.sshfs host: rw
33 30 0:43 / /srv/share/with\040space rw - fuse.sshfs host: rw
34 22 0:44 / /srv/other rw - ext4 /dev/sdc1 rw
35 22 0:45 / /srv/local rw - tmpfs tmpfs rw
36 35 0:46 / /srv/local/cache rw - xfs /dev/sdd1 rw
37 22 0:47 / /mnt/whole rw - virtiofs tag rw
`
	file := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(file, []byte(mountinfo), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ dir, want string }{
		{"/srv/share", "nfs4 at /srv/share/data"},
		{"/srv/share/with space", "fuse.sshfs at /srv/share/with space"},
		{"/srv/share2", "fuse.sshfs at /srv/share2/x"},
		{"/srv/other", ""},
		{"/srv/local", ""},
		{"/srv/shar", ""}, // a prefix of a name, not a parent
		{"/mnt/whole", "virtiofs at /mnt/whole"},
	}
	for _, tt := range tests {
		got, err := mayHangBelow(file, tt.dir)
		if err != nil || got != tt.want {
			t.Errorf("mayHangBelow(%q) = %q, %v; want %q", tt.dir, got, err, tt.want)
		}
	}
}

// slowFile is a file of a FUSE file system whose reads wait for release,
// as a hung NFS or FUSE server's do.
type slowFile struct {
	gofs.Inode
	reading chan struct{}
	release chan struct{}
}

var _ = (gofs.NodeOpener)((*slowFile)(nil))
var _ = (gofs.NodeReader)((*slowFile)(nil))
var _ = (gofs.NodeGetattrer)((*slowFile)(nil))

func (f *slowFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *slowFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode, out.Size = unix.S_IFREG|0o644, 4096
	return 0
}

func (f *slowFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	select {
	case f.reading <- struct{}{}:
	default:
	}
	<-f.release
	return fuse.ReadResultData(dest[:1]), 0
}

// TestHungSubmountStopsOnlyItsRequest: a read from a FUSE file system below
// the shared directory whose server does not answer keeps only that request
// waiting. Made raw, the call would keep its P, and the next stop-the-world
// (a garbage collection) would wait for it, stopping every goroutine of the
// daemon (the test then hangs: nothing in the process runs any more).
func TestHungSubmountStopsOnlyItsRequest(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("mounting a FUSE file system needs root")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "remote")
	os.Mkdir(mnt, 0o755)
	slow := &slowFile{reading: make(chan struct{}, 1), release: make(chan struct{})}
	root := &gofs.Inode{}
	server, err := gofs.Mount(mnt, root, &gofs.Options{
		MountOptions: fuse.MountOptions{Name: "hung", DirectMount: true},
		OnAdd: func(ctx context.Context) {
			root.AddChild("slow", root.NewPersistentInode(ctx, slow, gofs.StableAttr{Mode: unix.S_IFREG}), false)
		},
	})
	if err != nil {
		t.Skipf("mount a FUSE file system: %v", err)
	}
	released := false
	defer func() {
		if !released {
			close(slow.release)
		}
		server.Unmount()
	}()

	fs, err := New(Options{SharedDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	var init fuse.InitOut
	fs.Init(^uint64(0), &init)
	if !rawsys.OrdinaryCalls() {
		t.Error("a FUSE mount below the shared directory did not turn ordinary system calls on")
	}
	remote := mustLookup(t, fs, fuseproto.RootID, "remote")
	node := mustLookup(t, fs, remote, "slow")
	fh, errno := open(t, fs, node, unix.O_RDONLY)
	if errno != 0 {
		t.Fatalf("open: %v", errno)
	}
	done := make(chan syscall.Errno, 1)
	go func() {
		_, errno := read(t, fs, node, fh, 4096)
		done <- errno
	}()
	<-slow.reading

	// Were the read raw, this collection would wait for it, and with it
	// every goroutine, this test's too: the test would hang until go
	// test's -timeout.
	runtime.GC()
	close(slow.release)
	released = true
	if errno := <-done; errno != 0 {
		t.Errorf("read: %v", errno)
	}
	release(fs, node, fh)
}
