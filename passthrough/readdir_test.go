package passthrough

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
)

type dirent struct {
	name string
	ino  uint64
	off  uint64
	typ  uint32
	node uint64 // READDIRPLUS only
}

// parseDirents decodes a READDIR or READDIRPLUS reply.
func parseDirents(t *testing.T, b []byte, plus bool) []dirent {
	t.Helper()
	var out []dirent
	const entryOutSize = 128
	for len(b) > 0 {
		var d dirent
		if plus {
			d.node = binary.LittleEndian.Uint64(b)
			b = b[entryOutSize:]
		}
		d.ino = binary.LittleEndian.Uint64(b)
		d.off = binary.LittleEndian.Uint64(b[8:])
		n := int(binary.LittleEndian.Uint32(b[16:]))
		d.typ = binary.LittleEndian.Uint32(b[20:])
		d.name = string(b[24 : 24+n])
		out = append(out, d)
		b = b[(24+n+7)&^7:]
	}
	return out
}

// listDir reads a whole directory in replies of size bytes, each starting
// where the last one stopped, as the kernel does.
func listDir(t *testing.T, fs *FS, node fuseproto.NodeID, size int, plus bool) []dirent {
	t.Helper()
	var oo fuse.OpenOut
	if errno := fs.OpenDir(req(node), &fuse.OpenIn{}, &oo); errno != 0 {
		t.Fatalf("opendir: %v", errno)
	}
	defer fs.ReleaseDir(req(node), &fuse.ReleaseIn{Fh: oo.Fh})
	var all []dirent
	var off uint64
	for {
		w := fuseproto.NewDirWriter(make([]byte, size))
		if errno := fs.ReadDir(req(node), &fuse.ReadIn{Fh: oo.Fh, Offset: off, Size: uint32(size)}, plus, w); errno != 0 {
			t.Fatalf("readdir at %d: %v", off, errno)
		}
		ents := parseDirents(t, w.Bytes(), plus)
		if len(ents) == 0 {
			return all
		}
		all = append(all, ents...)
		off = ents[len(ents)-1].off
	}
}

func TestReadDirLarge(t *testing.T) {
	const files = 3000
	for _, plus := range []bool{false, true} {
		t.Run(fmt.Sprintf("plus=%v", plus), func(t *testing.T) {
			forEachMode(t, Options{}, func(t *testing.T, fs *FS, dir string) {
				for k := 0; k < files; k++ {
					writeHostFile(t, filepath.Join(dir, fmt.Sprintf("file-with-a-longish-name-%05d", k)), "")
				}
				if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
					t.Fatal(err)
				}
				seen := map[string]int{}
				for _, d := range listDir(t, fs, fuseproto.RootID, 4096, plus) {
					seen[d.name]++
					wantType := uint32(unix.DT_REG)
					if d.name == "subdir" || d.name == "." || d.name == ".." {
						wantType = unix.DT_DIR
					}
					if d.typ != wantType {
						t.Errorf("%s: type %d, want %d", d.name, d.typ, wantType)
					}
					if plus && d.name != "." && d.name != ".." {
						if n, ok := fs.Store().Lookups(fuseproto.NodeID(d.node)); !ok || n != 1 {
							t.Errorf("%s: node %d has %d lookups (known %v), want 1", d.name, d.node, n, ok)
						}
					}
				}
				if len(seen) != files+3 {
					t.Fatalf("listed %d distinct names, want %d", len(seen), files+3)
				}
				for name, n := range seen {
					if n != 1 {
						t.Errorf("%s listed %d times", name, n)
					}
				}
			})
		})
	}
}

// A reply too small for even one entry returns nothing rather than an
// error or a cut entry.
func TestReadDirTinyBuffer(t *testing.T) {
	fs, dir := newFS(t, Options{})
	writeHostFile(t, filepath.Join(dir, "f"), "")
	var oo fuse.OpenOut
	if errno := fs.OpenDir(req(fuseproto.RootID), &fuse.OpenIn{}, &oo); errno != 0 {
		t.Fatal(errno)
	}
	w := fuseproto.NewDirWriter(make([]byte, 16))
	if errno := fs.ReadDir(req(fuseproto.RootID), &fuse.ReadIn{Fh: oo.Fh, Size: 16}, true, w); errno != 0 || w.Len() != 0 {
		t.Fatalf("tiny readdirplus: %v, %d bytes", errno, w.Len())
	}
	if fs.Store().Len() != 1 {
		t.Fatalf("a lookup was recorded for an entry that was not sent: %d inodes", fs.Store().Len())
	}
}
