package tests

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// dirs is a pair of paths naming the same directory: through the mount and
// on the host side of the shared directory.
type dirs struct {
	mnt string // the directory through the ferryfs mount
	src string // the same directory in the shared directory on the host
}

// m returns name's path through the mount.
func (d dirs) m(name string) string { return filepath.Join(d.mnt, name) }

// h returns name's path on the host side.
func (d dirs) h(name string) string { return filepath.Join(d.src, name) }

// subdir creates a fresh directory called name through the mount and
// returns it as a dirs pair.
func subdir(t *testing.T, mnt, src, name string) dirs {
	t.Helper()
	if err := os.Mkdir(filepath.Join(mnt, name), 0o755); err != nil {
		t.Fatalf("mkdir %s through the mount: %v", name, err)
	}
	return dirs{mnt: filepath.Join(mnt, name), src: filepath.Join(src, name)}
}

// wantErrno fails the test unless err is the errno want.
func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v (%s)", what, err, want, unix.ErrnoName(want))
	}
}

// mustWrite writes data to path, creating or truncating it with perm.
func mustWrite(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// mustRead returns the content of path.
func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// wantContent fails the test unless path holds exactly want.
func wantContent(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("content of %s: got %s, want %s", path, summarize(got), summarize(want))
	}
}

// summarize renders data for a failure message: quoted when short, else its
// length and hash.
func summarize(data []byte) string {
	if len(data) <= 64 {
		return fmt.Sprintf("%q", data)
	}
	return fmt.Sprintf("%d bytes (sha256 %x, starting %q)", len(data), sha256.Sum256(data), data[:16])
}

// mustLstat lstats path.
func mustLstat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return st
}

// wantMissing fails the test unless path does not exist.
func wantMissing(t *testing.T, path string) {
	t.Helper()
	var st unix.Stat_t
	wantErrno(t, "lstat "+path, unix.Lstat(path, &st), unix.ENOENT)
}

// randomBytes returns n pseudo-random bytes determined by seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fileSHA256 returns the sha256 of path's content and its length.
func fileSHA256(t *testing.T, path string) ([32]byte, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n
}

// names returns the names in dir (without . and ..), failing the test on error.
func names(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer f.Close()
	n, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	return n
}
