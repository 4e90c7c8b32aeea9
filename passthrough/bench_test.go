package passthrough

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
)

// The hot operations, once per inode reference mode: with file handles every
// operation first re-opens the object from its handle.
func BenchmarkOps(b *testing.B) {
	for _, mode := range handleModes {
		b.Run(mode.String(), func(b *testing.B) {
			dir := b.TempDir()
			fs, err := New(Options{SharedDir: dir, InodeFileHandles: mode})
			if err != nil {
				b.Fatal(err)
			}
			defer fs.Close()
			if err := unix.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
				b.Fatal(err)
			}
			var e fuse.EntryOut
			if errno := fs.Lookup(req(1), 1, "d", &e); errno != 0 {
				b.Fatal(errno)
			}
			d := fuseproto.NodeID(e.NodeId)
			var co fuse.CreateOut
			if errno := fs.Create(req(d), &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, "f", &co); errno != 0 {
				b.Fatal(errno)
			}
			f, fh := fuseproto.NodeID(co.NodeId), co.Fh
			buf := make([]byte, 4096)
			fs.Write(req(f), &fuse.WriteIn{Fh: fh, Size: 4096}, [][]byte{buf})

			b.Run("getattr", func(b *testing.B) {
				b.ReportAllocs()
				var out fuse.AttrOut
				for n := 0; n < b.N; n++ {
					if errno := fs.GetAttr(req(f), &fuse.GetAttrIn{}, &out); errno != 0 {
						b.Fatal(errno)
					}
				}
			})
			b.Run("lookup-known", func(b *testing.B) {
				b.ReportAllocs()
				for n := 0; n < b.N; n++ {
					if errno := fs.Lookup(req(d), d, "f", &e); errno != 0 {
						b.Fatal(errno)
					}
				}
				fs.Forget(f, uint64(b.N))
			})
			b.Run("read-4k", func(b *testing.B) {
				b.ReportAllocs()
				in := &fuse.ReadIn{Fh: fh, Size: 4096}
				dst := [][]byte{buf}
				for n := 0; n < b.N; n++ {
					if _, errno := fs.Read(req(f), in, dst); errno != 0 {
						b.Fatal(errno)
					}
				}
			})
			// A guest's 1 MiB write comes in 256 pages.
			b.Run("write-1m-pages", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(1 << 20)
				page := make([]byte, 1<<20)
				src := make([][]byte, 0, 256)
				for p := range 256 {
					src = append(src, page[p*4096:(p+1)*4096])
				}
				in := &fuse.WriteIn{Fh: fh, Size: 1 << 20}
				for n := 0; n < b.N; n++ {
					if _, errno := fs.Write(req(f), in, src); errno != 0 {
						b.Fatal(errno)
					}
				}
			})
			b.Run("open-release", func(b *testing.B) {
				b.ReportAllocs()
				var oo fuse.OpenOut
				for n := 0; n < b.N; n++ {
					if errno := fs.Open(req(f), &fuse.OpenIn{Flags: unix.O_RDONLY}, &oo); errno != 0 {
						b.Fatal(errno)
					}
					fs.Release(req(f), &fuse.ReleaseIn{Fh: oo.Fh})
				}
			})
		})
	}
}

// BenchmarkMkdirAs measures what running as the guest's caller costs: a
// root caller takes the fast path, another user locks the thread and sets
// and restores fsuid, fsgid and groups around the mkdir; with ACLs the
// umask is set too.
func BenchmarkMkdirAs(b *testing.B) {
	if unix.Geteuid() != 0 {
		b.Skip("needs root")
	}
	for _, c := range []struct {
		name     string
		uid, gid uint32
		acl      bool
	}{{"root", 0, 0, false}, {"user", 1000, 1000, false}, {"user-acl", 1000, 1000, true}} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			unix.Chmod(dir, 0o777)
			fs, err := New(Options{SharedDir: dir, PosixACL: c.acl})
			if err != nil {
				b.Fatal(err)
			}
			defer fs.Close()
			var init fuse.InitOut
			if _, errno := fs.Init(^uint64(0), &init); errno != 0 {
				b.Fatal(errno)
			}
			r := &fuseproto.Request{Header: fuse.InHeader{NodeId: 1, Caller: fuse.Caller{Owner: fuse.Owner{Uid: c.uid, Gid: c.gid}}}}
			var out fuse.EntryOut
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				name := "d" + strconv.Itoa(n)
				if errno := fs.Mkdir(r, &fuse.MkdirIn{Mode: 0o755, Umask: 0o022}, name, &out); errno != 0 {
					b.Fatal(errno)
				}
				b.StopTimer()
				fs.Forget(fuseproto.NodeID(out.NodeId), 1)
				unix.Rmdir(filepath.Join(dir, name))
				b.StartTimer()
			}
		})
	}
}

// BenchmarkSetAttrAs: what SETATTR (a touch) costs when it runs with the
// caller's identity: nothing for the daemon's own (root), a switch of the
// serving thread's fsuid and fsgid and back for another user.
func BenchmarkSetAttrAs(b *testing.B) {
	if unix.Geteuid() != 0 {
		b.Skip("needs root")
	}
	for _, c := range []struct {
		name     string
		uid, gid uint32
	}{{"root", 0, 0}, {"user", 1000, 1000}} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, nil, 0o666); err != nil {
				b.Fatal(err)
			}
			os.Chmod(path, 0o666)
			fs, err := New(Options{SharedDir: dir})
			if err != nil {
				b.Fatal(err)
			}
			defer fs.Close()
			var init fuse.InitOut
			if _, errno := fs.Init(^uint64(0), &init); errno != 0 {
				b.Fatal(errno)
			}
			var entry fuse.EntryOut
			if errno := fs.Lookup(&fuseproto.Request{Header: fuse.InHeader{NodeId: 1}}, 1, "f", &entry); errno != 0 {
				b.Fatal(errno)
			}
			r := &fuseproto.Request{Header: fuse.InHeader{NodeId: entry.NodeId, Caller: fuse.Caller{Owner: fuse.Owner{Uid: c.uid, Gid: c.gid}}}}
			in := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW}}
			var out fuse.AttrOut
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if errno := fs.SetAttr(r, &in, &out); errno != 0 {
					b.Fatal(errno)
				}
			}
		})
	}
}
