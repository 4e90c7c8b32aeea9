package hostile

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	vf "github.com/ferryfs/ferryfs/tests/vhostfront"
)

// expectErrno sends r and checks the reply is an error reply with want (or,
// with want 0, any error).
func (e *env) expectErrno(name string, r *vf.FUSERequest, want syscall.Errno) {
	e.t.Helper()
	rep, err := e.fs.Do(r)
	if err != nil {
		e.t.Errorf("%s: %v", name, err)
		return
	}
	got := rep.Errno()
	switch {
	case want == 0 && got == 0:
		e.t.Errorf("%s: succeeded, want an error", name)
	case want != 0 && got != want:
		e.t.Errorf("%s: errno %d (%v), want %d (%v)", name, got, got, want, want)
	}
}

// TestMalformedFUSERequests sends malformed FUSE requests over a healthy
// ring: each gets an error reply with a sensible errno and the daemon keeps
// serving on the same queue.
func TestMalformedFUSERequests(t *testing.T) {
	e := start(t, config{})
	if err := os.WriteFile(filepath.Join(e.shared, "file"), bytes.Repeat([]byte("x"), 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	getattr := func() *vf.FUSERequest {
		return vf.NewFUSERequest(vf.OpGetattr, vf.RootID).Struct(&fuse.GetAttrIn{})
	}
	withLength := func(r *vf.FUSERequest, n uint32) *vf.FUSERequest {
		r.Header.Length, r.KeepLength = n, true
		return r
	}
	long := strings.Repeat("n", 256)
	cases := []struct {
		name string
		req  *vf.FUSERequest
		want syscall.Errno // 0: any error
	}{
		{"length field larger than the request", withLength(getattr(), 40+16+8), syscall.EINVAL},
		{"length field smaller than the request", withLength(getattr(), 40+16-8), syscall.EINVAL},
		{"length field 0", withLength(getattr(), 0), syscall.EINVAL},
		{"length field 0xffffffff", withLength(getattr(), 0xffffffff), syscall.EINVAL},
		{"extensions longer than the request", func() *vf.FUSERequest {
			r := getattr()
			r.Header.TotalExtlen = 100
			return r
		}(), syscall.EINVAL},
		{"truncated GETATTR arguments", vf.NewFUSERequest(vf.OpGetattr, vf.RootID).Raw(make([]byte, 8)), syscall.EINVAL},
		{"truncated CREATE arguments", vf.NewFUSERequest(vf.OpCreate, vf.RootID).Raw(make([]byte, 4)), syscall.EINVAL},
		{"truncated WRITE arguments", vf.NewFUSERequest(vf.OpWrite, vf.RootID).Raw(make([]byte, 20)), syscall.EINVAL},
		{"truncated RENAME2 arguments", vf.NewFUSERequest(vf.OpRename2, vf.RootID).Raw(make([]byte, 12)), syscall.EINVAL},
		{"LOOKUP without a name", vf.NewFUSERequest(vf.OpLookup, vf.RootID), syscall.EINVAL},
		{"name without NUL", vf.NewFUSERequest(vf.OpLookup, vf.RootID).Raw([]byte("file")), syscall.EINVAL},
		{"name with '/'", vf.NewFUSERequest(vf.OpLookup, vf.RootID).Name("a/b"), syscall.EINVAL},
		{"name '/'", vf.NewFUSERequest(vf.OpLookup, vf.RootID).Name("/"), syscall.EINVAL},
		{"name with '/' climbing out", vf.NewFUSERequest(vf.OpLookup, vf.RootID).Name("../../etc"), syscall.EINVAL},
		{"empty name", vf.NewFUSERequest(vf.OpLookup, vf.RootID).Name(""), syscall.EINVAL},
		{"name longer than NAME_MAX", vf.NewFUSERequest(vf.OpLookup, vf.RootID).Name(long), syscall.ENAMETOOLONG},
		{"MKDIR ..", vf.NewFUSERequest(vf.OpMkdir, vf.RootID).Struct(&fuse.MkdirIn{Mode: 0o755}).Name(".."), syscall.EINVAL},
		{"MKDIR .", vf.NewFUSERequest(vf.OpMkdir, vf.RootID).Struct(&fuse.MkdirIn{Mode: 0o755}).Name("."), syscall.EINVAL},
		{"CREATE with '/'", vf.NewFUSERequest(vf.OpCreate, vf.RootID).Struct(&fuse.CreateIn{Flags: uint32(os.O_CREATE | os.O_RDWR), Mode: 0o644}).Name("x/y"), syscall.EINVAL},
		{"CREATE ..", vf.NewFUSERequest(vf.OpCreate, vf.RootID).Struct(&fuse.CreateIn{Flags: uint32(os.O_CREATE | os.O_RDWR), Mode: 0o644}).Name(".."), syscall.EINVAL},
		{"CREATE empty", vf.NewFUSERequest(vf.OpCreate, vf.RootID).Struct(&fuse.CreateIn{Flags: uint32(os.O_CREATE | os.O_RDWR), Mode: 0o644}).Name(""), syscall.EINVAL},
		{"UNLINK ..", vf.NewFUSERequest(vf.OpUnlink, vf.RootID).Name(".."), syscall.EINVAL},
		{"RMDIR with '/'", vf.NewFUSERequest(vf.OpRmdir, vf.RootID).Name("a/.."), syscall.EINVAL},
		{"RENAME to ..", vf.NewFUSERequest(vf.OpRename, vf.RootID).Raw(binary.LittleEndian.AppendUint64(nil, vf.RootID)).Name("file").Name(".."), syscall.EINVAL},
		{"RENAME without the second name", vf.NewFUSERequest(vf.OpRename, vf.RootID).Raw(binary.LittleEndian.AppendUint64(nil, vf.RootID)).Name("file"), syscall.EINVAL},
		{"SYMLINK with an empty target", vf.NewFUSERequest(vf.OpSymlink, vf.RootID).Name("ln").Name(""), syscall.EINVAL},
		{"SYMLINK target without NUL", vf.NewFUSERequest(vf.OpSymlink, vf.RootID).Name("ln").Raw([]byte("/etc/passwd")), syscall.EINVAL},
		{"unknown opcode 7", vf.NewFUSERequest(7, vf.RootID), syscall.ENOSYS},
		{"unknown opcode 19", vf.NewFUSERequest(19, vf.RootID), syscall.ENOSYS},
		{"unknown opcode 54", vf.NewFUSERequest(54, vf.RootID), syscall.ENOSYS},
		{"unknown opcode 4096 (CUSE_INIT)", vf.NewFUSERequest(4096, vf.RootID), syscall.ENOSYS},
		{"unknown opcode 0xffffffff", vf.NewFUSERequest(0xffffffff, vf.RootID), syscall.ENOSYS},
		{"unknown opcode 0", vf.NewFUSERequest(0, vf.RootID), syscall.ENOSYS},
		{"GETATTR of node 0", vf.NewFUSERequest(vf.OpGetattr, 0).Struct(&fuse.GetAttrIn{}), 0},
		{"GETATTR of an unknown node", vf.NewFUSERequest(vf.OpGetattr, 0xdeadbeef).Struct(&fuse.GetAttrIn{}), 0},
		{"LOOKUP in an unknown node", vf.NewFUSERequest(vf.OpLookup, 1<<63).Name("x"), 0},
		{"READ of an unknown handle", vf.NewFUSERequest(vf.OpRead, vf.RootID).Struct(&fuse.ReadIn{Fh: 0xdeadbeef, Size: 4096}), 0},
		{"WRITE of an unknown handle", vf.NewFUSERequest(vf.OpWrite, vf.RootID).Struct(&fuse.WriteIn{Fh: 0xdeadbeef, Size: 3}).Raw([]byte("abc")), 0},
	}
	for _, c := range cases {
		e.expectErrno(c.name, c.req, c.want)
		e.alive()
	}
	e.serves(e.rq)

	// Nothing was created by the refused names.
	ents, err := os.ReadDir(e.shared)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "file" {
		var names []string
		for _, de := range ents {
			names = append(names, de.Name())
		}
		t.Errorf("the shared directory holds %q, want only \"file\"", names)
	}

	t.Run("LOOKUP .. at the root stays in the shared directory", func(t *testing.T) {
		var st syscall.Stat_t
		if err := syscall.Stat(e.shared, &st); err != nil {
			t.Fatal(err)
		}
		ent, err := e.fs.Lookup(vf.RootID, "..")
		if err != nil {
			return // refusing is fine too
		}
		if ent.Ino != st.Ino {
			t.Errorf("LOOKUP .. at the root gives inode %d, the shared directory is %d: the guest climbed out", ent.Ino, st.Ino)
		}
	})

	t.Run("WRITE with size mismatch", func(t *testing.T) {
		cr, err := e.fs.Create(vf.RootID, "w", uint32(os.O_RDWR|os.O_CREATE), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		data := []byte("0123456789")
		e.expectErrno("WRITE size larger than the data", vf.NewFUSERequest(vf.OpWrite, cr.NodeId).
			Struct(&fuse.WriteIn{Fh: cr.Fh, Size: 100}).Raw(data), syscall.EINVAL)
		e.expectErrno("WRITE size smaller than the data", vf.NewFUSERequest(vf.OpWrite, cr.NodeId).
			Struct(&fuse.WriteIn{Fh: cr.Fh, Size: 3}).Raw(data), syscall.EINVAL)
		e.expectErrno("WRITE size 0xffffffff", vf.NewFUSERequest(vf.OpWrite, cr.NodeId).
			Struct(&fuse.WriteIn{Fh: cr.Fh, Size: 0xffffffff}).Raw(data), syscall.EINVAL)
		big := make([]byte, 1<<20+4096)
		e.expectErrno("WRITE larger than max_write", vf.NewFUSERequest(vf.OpWrite, cr.NodeId).
			Struct(&fuse.WriteIn{Fh: cr.Fh, Size: uint32(len(big))}).Raw(big), syscall.EINVAL)
		e.expectErrno("WRITE at an offset beyond 2^63", vf.NewFUSERequest(vf.OpWrite, cr.NodeId).
			Struct(&fuse.WriteIn{Fh: cr.Fh, Offset: 1 << 63, Size: uint32(len(data))}).Raw(data), 0)
		if fi, err := os.Stat(filepath.Join(e.shared, "w")); err != nil || fi.Size() != 0 {
			t.Errorf("after the refused WRITEs the file is %v, %v; want empty", fi, err)
		}
		if n, err := e.fs.Write(cr.NodeId, cr.Fh, 0, data); err != nil || n != uint32(len(data)) {
			t.Errorf("a correct WRITE after them: %d, %v", n, err)
		}
		e.fs.Release(cr.NodeId, cr.Fh)
	})

	t.Run("READ of 1 GiB into a 4 KiB buffer", func(t *testing.T) {
		ent, err := e.fs.Lookup(vf.RootID, "file")
		if err != nil {
			t.Fatal(err)
		}
		op, err := e.fs.Open(ent.NodeId, uint32(os.O_RDONLY))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := e.fs.DoSize(vf.NewFUSERequest(vf.OpRead, ent.NodeId).Struct(&fuse.ReadIn{Fh: op.Fh, Size: 1 << 30}), 4096)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Errno() != 0 {
			t.Logf("READ of 1 GiB into 4 KiB refused with %v", rep.Errno())
		} else if len(rep.Payload) > 4096-vf.OutHeaderSize || !bytes.Equal(rep.Payload, bytes.Repeat([]byte("x"), len(rep.Payload))) {
			t.Errorf("READ of 1 GiB into 4 KiB: %d bytes", len(rep.Payload))
		}
		e.expectErrno("READ at an offset beyond 2^63", vf.NewFUSERequest(vf.OpRead, ent.NodeId).
			Struct(&fuse.ReadIn{Fh: op.Fh, Offset: 1<<63 + 5, Size: 4096}), 0)
		e.fs.Release(ent.NodeId, op.Fh)
	})

	e.serves(e.rq)
	e.finish()
}

// TestForgetAbuse sends FORGET and BATCH_FORGET with nonsense on the
// high-priority queue: no reply is written, nothing crashes, the root
// survives being "forgotten", and serving goes on.
func TestForgetAbuse(t *testing.T) {
	e := start(t, config{})
	if err := os.WriteFile(filepath.Join(e.shared, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ent, err := e.fs.Lookup(vf.RootID, "f")
	if err != nil {
		t.Fatal(err)
	}
	hi := e.fuseOn(e.hi)
	batch := func(count uint32, records ...uint64) *vf.FUSERequest {
		b := binary.LittleEndian.AppendUint32(nil, count)
		b = binary.LittleEndian.AppendUint32(b, 0)
		for _, r := range records {
			b = binary.LittleEndian.AppendUint64(b, r)
		}
		return vf.NewFUSERequest(vf.OpBatchForget, 0).Raw(b)
	}
	reqs := []struct {
		name string
		req  *vf.FUSERequest
	}{
		// count*16 overflows 32 bits to 0, matching the 0 record bytes.
		{"BATCH_FORGET count 0x10000000 without records", batch(0x10000000)},
		{"BATCH_FORGET count 0xffffffff with one record", batch(0xffffffff, ent.NodeId, 1)},
		{"BATCH_FORGET count 2 with one record", batch(2, ent.NodeId, 1)},
		{"BATCH_FORGET truncated header", vf.NewFUSERequest(vf.OpBatchForget, 0).Raw(make([]byte, 4))},
		{"BATCH_FORGET of unknown nodes", batch(2, 0xdeadbeef, 5, 0, 1)},
		{"BATCH_FORGET of the root, 2^64-1 times", batch(1, vf.RootID, ^uint64(0))},
		{"FORGET of the root, 2^64-1 times", vf.NewFUSERequest(vf.OpForget, vf.RootID).Struct(&fuse.ForgetIn{Nlookup: ^uint64(0)})},
		{"FORGET of node 0", vf.NewFUSERequest(vf.OpForget, 0).Struct(&fuse.ForgetIn{Nlookup: 1})},
		{"FORGET of an unknown node", vf.NewFUSERequest(vf.OpForget, 0xdeadbeef).Struct(&fuse.ForgetIn{Nlookup: 1})},
		{"FORGET of a node, more times than looked up", vf.NewFUSERequest(vf.OpForget, ent.NodeId).Struct(&fuse.ForgetIn{Nlookup: 1000})},
		{"FORGET truncated", vf.NewFUSERequest(vf.OpForget, ent.NodeId).Raw(make([]byte, 3))},
		{"INTERRUPT of nothing", vf.NewFUSERequest(vf.OpInterrupt, 0).Raw(binary.LittleEndian.AppendUint64(nil, 12345))},
	}
	for _, r := range reqs {
		n, err := hi.Send(r.req)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		if n != 0 {
			t.Errorf("%s: the device wrote %d bytes into a chain without writable buffers", r.name, n)
		}
		e.alive()
		e.serves(e.rq)
	}
	// The root was "forgotten" 2^64-1 times twice over and still works;
	// the file can be looked up again.
	e.serves(e.hi)
	if _, err := e.fs.Lookup(vf.RootID, "f"); err != nil {
		t.Errorf("LOOKUP after the FORGETs: %v", err)
	}
	// A node forgotten more times than looked up is gone, not corrupt.
	if _, err := e.fs.GetAttr(ent.NodeId); err != nil {
		t.Logf("GETATTR of a forgotten node: %v", err)
	}
	e.finish()
}

// TestInitAbuse sends requests before INIT, INIT twice, INITs of bad
// versions and DESTROY: each gets a sensible answer and a proper INIT
// always brings the session back.
func TestInitAbuse(t *testing.T) {
	e := start(t, config{noInit: true})
	e.expectErrno("GETATTR before INIT", vf.NewFUSERequest(vf.OpGetattr, vf.RootID).Struct(&fuse.GetAttrIn{}), syscall.EIO)
	e.expectErrno("LOOKUP before INIT", vf.NewFUSERequest(vf.OpLookup, vf.RootID).Name("x"), syscall.EIO)
	e.expectErrno("unknown opcode before INIT", vf.NewFUSERequest(9999, vf.RootID), 0)
	if n, err := e.fuseOn(e.hi).Send(vf.NewFUSERequest(vf.OpForget, 5).Struct(&fuse.ForgetIn{Nlookup: 1})); err != nil || n != 0 {
		t.Errorf("FORGET before INIT: %d, %v", n, err)
	}
	e.expectErrno("truncated INIT", vf.NewFUSERequest(vf.OpInit, 0).Raw(make([]byte, 8)), syscall.EINVAL)

	if _, err := e.fs.Init(); err != nil {
		t.Fatalf("INIT: %v", err)
	}
	e.serves(e.rq)
	if _, err := e.fs.Init(); err != nil {
		t.Fatalf("second INIT: %v", err)
	}
	e.serves(e.rq)

	e.expectErrno("INIT 6.x", vf.NewFUSERequest(vf.OpInit, 0).Struct(&fuse.InitIn{Major: 6, Minor: 99}), syscall.EPROTO)
	e.expectErrno("INIT 7.1", vf.NewFUSERequest(vf.OpInit, 0).Struct(&fuse.InitIn{Major: 7, Minor: 1}), syscall.EPROTO)
	rep, err := e.fs.Do(vf.NewFUSERequest(vf.OpInit, 0).Struct(&fuse.InitIn{Major: 0xffffffff, Minor: 0xffffffff}))
	if err != nil {
		t.Fatalf("INIT 4294967295.x: %v", err)
	}
	if out, err := vf.DecodeInitOut(rep); err != nil || out.Major != 7 {
		t.Errorf("INIT of a newer major: %+v, %v; want our major (7) back", out, err)
	}
	// INIT with only the 16 bytes a 7.27 kernel sends.
	rep, err = e.fs.Do(vf.NewFUSERequest(vf.OpInit, 0).Raw(vf.ArgBytes(&fuse.InitIn{Major: 7, Minor: 27, MaxReadAhead: 1 << 20})[:16]))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := vf.DecodeInitOut(rep); err != nil || out.Minor != 27 {
		t.Errorf("short INIT 7.27: %+v, %v", out, err)
	}
	e.serves(e.rq)

	if rep, err := e.fs.Do(vf.NewFUSERequest(vf.OpDestroy, 0)); err != nil || rep.Errno() != 0 {
		t.Fatalf("DESTROY: %v, %v", rep, err)
	}
	e.expectErrno("GETATTR after DESTROY", vf.NewFUSERequest(vf.OpGetattr, vf.RootID).Struct(&fuse.GetAttrIn{}), syscall.EIO)
	if _, err := e.fs.Init(); err != nil {
		t.Fatalf("INIT after DESTROY: %v", err)
	}
	e.serves(e.rq)
	e.finish()
}

// TestSpecialFilesAndSymlinks checks that a guest cannot use the shared
// directory to reach the host: device nodes and FIFOs it creates (or finds)
// are never opened on the host, and symlinks are never followed.
func TestSpecialFilesAndSymlinks(t *testing.T) {
	e := start(t, config{})
	if err := os.Symlink("/", filepath.Join(e.shared, "hostroot")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(e.shared, "hostfifo"), 0o666); err != nil {
		t.Fatal(err)
	}

	// Objects the guest makes: a character device like the host's
	// /dev/zero (1:5), a FIFO.
	mknod := func(name string, mode, rdev uint32) uint64 {
		t.Helper()
		var out fuse.EntryOut
		rep, err := e.fs.Do(vf.NewFUSERequest(vf.OpMknod, vf.RootID).Struct(&fuse.MknodIn{Mode: mode, Rdev: rdev}).Name(name))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Errno() != 0 {
			t.Logf("MKNOD %s refused: %v", name, rep.Errno())
			return 0
		}
		if err := rep.Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out.NodeId
	}
	lookup := func(name string) uint64 {
		t.Helper()
		ent, err := e.fs.Lookup(vf.RootID, name)
		if err != nil {
			t.Fatalf("LOOKUP %s: %v", name, err)
		}
		return ent.NodeId
	}
	nodes := map[string]uint64{
		"guest char device 1:5": mknod("chr", syscall.S_IFCHR|0o666, 1<<8|5),
		"guest FIFO":            mknod("fifo", syscall.S_IFIFO|0o666, 0),
		"host FIFO":             lookup("hostfifo"),
		"host symlink to /":     lookup("hostroot"),
	}
	for what, node := range nodes {
		if node == 0 {
			continue
		}
		for _, flags := range []int{os.O_RDONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC} {
			// A FIFO opened on the host would block the worker: Do's
			// timeout catches that.
			op, err := e.fs.Open(node, uint32(flags))
			if err == nil {
				t.Errorf("OPEN of the %s (flags %#x) succeeded (fh %d): the host object was opened", what, flags, op.Fh)
				if data, err := e.fs.Read(node, op.Fh, 0, 16); err == nil {
					t.Errorf("and READ gives %q", data)
				}
				e.fs.Release(node, op.Fh)
			} else if errnoOf(err) == 0 {
				t.Fatalf("OPEN of the %s: %v", what, err)
			}
		}
	}
	// Looking up through the host symlink does not follow it.
	if _, err := e.fs.Lookup(nodes["host symlink to /"], "etc"); err == nil {
		t.Errorf("LOOKUP etc in the symlink to / succeeded: the symlink was followed")
	}
	// A symlink the guest makes is stored, not followed either.
	var sl fuse.EntryOut
	rep, err := e.fs.Do(vf.NewFUSERequest(vf.OpSymlink, vf.RootID).Name("guestlink").Name("/etc"))
	if err != nil || rep.Errno() != 0 {
		t.Fatalf("SYMLINK: %v %v", rep, err)
	}
	if err := rep.Decode(&sl); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fs.Lookup(sl.NodeId, "passwd"); err == nil {
		t.Errorf("LOOKUP passwd in the guest's symlink to /etc succeeded")
	}
	if op, err := e.fs.Open(sl.NodeId, uint32(os.O_RDONLY)); err == nil {
		t.Errorf("OPEN of the guest's symlink to /etc succeeded (fh %d)", op.Fh)
	}
	e.serves(e.rq)
	e.finish()
}

// TestMoreMalformedFUSERequests covers the other opcodes with nonsense
// arguments: huge sizes into small buffers, unknown flags and handles.
// Every request gets an answer that fits its buffer, and serving goes on.
func TestMoreMalformedFUSERequests(t *testing.T) {
	e := start(t, config{})
	if err := os.WriteFile(filepath.Join(e.shared, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("t", 3000), filepath.Join(e.shared, "ln")); err != nil {
		t.Fatal(err)
	}
	f, err := e.fs.Lookup(vf.RootID, "f")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := e.fs.Lookup(vf.RootID, "ln")
	if err != nil {
		t.Fatal(err)
	}
	fh, err := e.fs.Open(f.NodeId, uint32(os.O_RDWR))
	if err != nil {
		t.Fatal(err)
	}
	dh, err := e.fs.Do(vf.NewFUSERequest(vf.OpOpendir, vf.RootID).Struct(&fuse.OpenIn{}))
	if err != nil || dh.Errno() != 0 {
		t.Fatalf("OPENDIR: %v %v", dh, err)
	}
	var dir fuse.OpenOut
	if err := dh.Decode(&dir); err != nil {
		t.Fatal(err)
	}
	const anyErr, anything = syscall.Errno(0), syscall.Errno(1 << 20)
	cases := []struct {
		name      string
		req       *vf.FUSERequest
		replySize int
		want      syscall.Errno // anyErr: some error; anything: success or error
	}{
		{"READDIR of 1 GiB into 4 KiB", vf.NewFUSERequest(vf.OpReaddir, vf.RootID).Struct(&fuse.ReadIn{Fh: dir.Fh, Size: 1 << 30}), 4096, anything},
		{"READDIRPLUS of 1 GiB into 4 KiB", vf.NewFUSERequest(vf.OpReaddirplus, vf.RootID).Struct(&fuse.ReadIn{Fh: dir.Fh, Size: 1 << 30}), 4096, anything},
		{"READDIRPLUS into 40 bytes", vf.NewFUSERequest(vf.OpReaddirplus, vf.RootID).Struct(&fuse.ReadIn{Fh: dir.Fh, Size: 4096}), 40, anything},
		{"READDIR at offset 2^64-1", vf.NewFUSERequest(vf.OpReaddir, vf.RootID).Struct(&fuse.ReadIn{Fh: dir.Fh, Offset: ^uint64(0), Size: 4096}), 4096, anything},
		{"READDIR of an unknown handle", vf.NewFUSERequest(vf.OpReaddir, vf.RootID).Struct(&fuse.ReadIn{Fh: 0xdead, Size: 4096}), 4096, anyErr},
		{"READDIR of a file handle", vf.NewFUSERequest(vf.OpReaddir, f.NodeId).Struct(&fuse.ReadIn{Fh: fh.Fh, Size: 4096}), 4096, anyErr},
		{"READ of a directory handle", vf.NewFUSERequest(vf.OpRead, vf.RootID).Struct(&fuse.ReadIn{Fh: dir.Fh, Size: 4096}), 4096, anyErr},
		{"GETXATTR of 1 GiB", vf.NewFUSERequest(vf.OpGetxattr, f.NodeId).Struct(&fuse.GetXAttrIn{Size: 1 << 30}).Name("user.x"), 4096, anything},
		{"LISTXATTR of 4 GiB into 20 bytes", vf.NewFUSERequest(vf.OpListxattr, f.NodeId).Struct(&fuse.GetXAttrIn{Size: 0xffffffff}), 20, anything},
		{"SETXATTR with size larger than the value", vf.NewFUSERequest(vf.OpSetxattr, f.NodeId).Raw(binary.LittleEndian.AppendUint64(nil, 100)).Name("user.x").Raw([]byte("abc")), 4096, syscall.EINVAL},
		{"SETXATTR of a value over 64 KiB", vf.NewFUSERequest(vf.OpSetxattr, f.NodeId).Raw(binary.LittleEndian.AppendUint64(nil, 1<<17)).Name("user.x").Raw(make([]byte, 1<<17)), 4096, syscall.E2BIG},
		{"SETXATTR with an empty name", vf.NewFUSERequest(vf.OpSetxattr, f.NodeId).Raw(binary.LittleEndian.AppendUint64(nil, 0)).Name(""), 4096, syscall.ERANGE},
		{"REMOVEXATTR of a name over 255 bytes", vf.NewFUSERequest(vf.OpRemovexattr, f.NodeId).Name("user." + strings.Repeat("x", 300)), 4096, syscall.ERANGE},
		{"READLINK of a 3000-byte target into 100 bytes", vf.NewFUSERequest(vf.OpReadlink, ln.NodeId), 100, anything},
		{"READLINK of a file", vf.NewFUSERequest(vf.OpReadlink, f.NodeId), 4096, anyErr},
		{"STATFS into 20 bytes", vf.NewFUSERequest(vf.OpStatfs, vf.RootID), 20, anyErr},
		{"SETATTR size 2^63", vf.NewFUSERequest(vf.OpSetattr, f.NodeId).Struct(&fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE, Size: 1 << 63}}), 4096, anyErr},
		{"SETATTR with every valid bit", vf.NewFUSERequest(vf.OpSetattr, f.NodeId).Struct(&fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: 0xffffffff, Fh: 0xdead, Size: 1 << 62, Mode: 0xffffffff}}), 4096, anything},
		{"LSEEK whence 99", vf.NewFUSERequest(vf.OpLseek, f.NodeId).Struct(&fuse.LseekIn{Fh: fh.Fh, Whence: 99}), 4096, anyErr},
		{"FALLOCATE of 2^63 bytes", vf.NewFUSERequest(vf.OpFallocate, f.NodeId).Struct(&fuse.FallocateIn{Fh: fh.Fh, Length: 1 << 63}), 4096, anyErr},
		{"FALLOCATE with every mode bit", vf.NewFUSERequest(vf.OpFallocate, f.NodeId).Struct(&fuse.FallocateIn{Fh: fh.Fh, Length: 10, Mode: 0xffffffff}), 4096, anyErr},
		{"COPY_FILE_RANGE from an unknown handle", vf.NewFUSERequest(vf.OpCopyFileRange, f.NodeId).Struct(&fuse.CopyFileRangeIn{FhIn: 0xdead, FhOut: fh.Fh, NodeIdOut: f.NodeId, Len: 1 << 40}), 4096, anyErr},
		{"COPY_FILE_RANGE into itself, overlapping, 2^62 bytes", vf.NewFUSERequest(vf.OpCopyFileRange, f.NodeId).Struct(&fuse.CopyFileRangeIn{FhIn: fh.Fh, FhOut: fh.Fh, NodeIdOut: f.NodeId, OffOut: 1, Len: 1 << 62}), 4096, anything},
		{"RENAME2 with every flag", vf.NewFUSERequest(vf.OpRename2, vf.RootID).Struct(&fuse.RenameIn{Newdir: vf.RootID, Flags: 0xffffffff}).Name("f").Name("g"), 4096, anyErr},
		{"RENAME into an unknown directory", vf.NewFUSERequest(vf.OpRename, vf.RootID).Raw(binary.LittleEndian.AppendUint64(nil, 0xdead)).Name("f").Name("g"), 4096, anyErr},
		{"RENAME into a file", vf.NewFUSERequest(vf.OpRename, vf.RootID).Raw(binary.LittleEndian.AppendUint64(nil, f.NodeId)).Name("f").Name("g"), 4096, anyErr},
		{"LINK of an unknown node", vf.NewFUSERequest(vf.OpLink, vf.RootID).Struct(&fuse.LinkIn{Oldnodeid: 0xdead}).Name("l"), 4096, anyErr},
		{"LINK of the root", vf.NewFUSERequest(vf.OpLink, vf.RootID).Struct(&fuse.LinkIn{Oldnodeid: vf.RootID}).Name("l"), 4096, anyErr},
		{"MKDIR in a file", vf.NewFUSERequest(vf.OpMkdir, f.NodeId).Struct(&fuse.MkdirIn{Mode: 0o755}).Name("d"), 4096, anyErr},
		{"RMDIR of the root's parent", vf.NewFUSERequest(vf.OpRmdir, vf.RootID).Name(".."), 4096, syscall.EINVAL},
		{"FSYNC of an unknown handle", vf.NewFUSERequest(vf.OpFsync, f.NodeId).Struct(&fuse.FsyncIn{Fh: 0xdead}), 4096, anyErr},
		{"FLUSH of an unknown handle", vf.NewFUSERequest(vf.OpFlush, f.NodeId).Struct(&fuse.FlushIn{Fh: 0xdead}), 4096, anyErr},
		{"RELEASE of an unknown handle", vf.NewFUSERequest(vf.OpRelease, f.NodeId).Struct(&fuse.ReleaseIn{Fh: 0xdead}), 4096, anything},
		{"RELEASEDIR of a file handle", vf.NewFUSERequest(vf.OpReleasedir, f.NodeId).Struct(&fuse.ReleaseIn{Fh: fh.Fh + 1000}), 4096, anything},
		{"TMPFILE in a file", vf.NewFUSERequest(vf.OpTmpfile, f.NodeId).Struct(&fuse.CreateIn{Flags: uint32(os.O_RDWR), Mode: 0o600}), 4096, anyErr},
		{"ACCESS with every mask bit", vf.NewFUSERequest(vf.OpAccess, f.NodeId).Struct(&fuse.AccessIn{Mask: 0xffffffff}), 4096, anything},
		{"GETATTR with a valid extension block", func() *vf.FUSERequest {
			r := vf.NewFUSERequest(vf.OpGetattr, vf.RootID).Struct(&fuse.GetAttrIn{}).Raw(make([]byte, 8))
			r.Header.TotalExtlen = 1
			return r
		}(), 4096, anything},
	}
	for _, c := range cases {
		rep, err := e.fs.DoSize(c.req, c.replySize)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		got := rep.Errno()
		switch {
		case c.want == anything:
		case c.want == anyErr && got == 0:
			t.Errorf("%s: succeeded, want an error", c.name)
		case c.want != anyErr && got != c.want:
			t.Errorf("%s: errno %v, want %v", c.name, got, c.want)
		}
		e.alive()
	}
	// The file was not grown to 2^62 bytes or otherwise wrecked beyond
	// what SETATTR with every bit could do.
	e.serves(e.rq)
	e.fs.Release(f.NodeId, fh.Fh)
	e.finish()
}
