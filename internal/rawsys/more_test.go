package rawsys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEntryCalls makes, renames, links, changes and removes entries with
// the raw calls and checks each result with the os package.
func TestEntryCalls(t *testing.T) {
	dir := t.TempDir()
	dirFD, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirFD)
	at := func(name string) string { return filepath.Join(dir, name) }

	steps := []struct {
		name  string
		do    func() error
		check func() error
	}{
		{"mkdirat", func() error { return Mkdirat(dirFD, "d", 0o750) }, func() error {
			return wantMode(at("d"), os.ModeDir|0o750)
		}},
		{"mknodat", func() error { return Mknodat(dirFD, "fifo", unix.S_IFIFO|0o600, 0) }, func() error {
			return wantMode(at("fifo"), os.ModeNamedPipe|0o600)
		}},
		{"symlinkat", func() error { return Symlinkat("d", dirFD, "link") }, func() error {
			if target, err := os.Readlink(at("link")); err != nil || target != "d" {
				return errors.New("link does not point at d: " + target)
			}
			return nil
		}},
		{"readlinkat", func() error {
			buf := make([]byte, 16)
			n, err := Readlinkat(dirFD, "link", buf)
			if err == nil && string(buf[:n]) != "d" {
				return errors.New("read " + string(buf[:n]))
			}
			return err
		}, nil},
		{"renameat2", func() error { return Renameat2(dirFD, "d", dirFD, "e", unix.RENAME_NOREPLACE) }, func() error {
			return wantMode(at("e"), os.ModeDir|0o750)
		}},
		{"renameat2-noreplace", func() error {
			if err := Renameat2(dirFD, "fifo", dirFD, "e", unix.RENAME_NOREPLACE); !errors.Is(err, unix.EEXIST) {
				return errors.New("RENAME_NOREPLACE onto an entry did not fail with EEXIST")
			}
			return nil
		}, nil},
		{"linkat", func() error { return Linkat(dirFD, "fifo", dirFD, "fifo2", 0) }, func() error {
			a, _ := os.Lstat(at("fifo"))
			b, err := os.Lstat(at("fifo2"))
			if err != nil || !os.SameFile(a, b) {
				return errors.New("fifo2 is not a link of fifo")
			}
			return nil
		}},
		{"fchmodat", func() error { return Fchmodat(dirFD, "e", 0o700) }, func() error {
			return wantMode(at("e"), os.ModeDir|0o700)
		}},
		{"fchownat", func() error { return Fchownat(dirFD, "e", os.Getuid(), os.Getgid(), unix.AT_SYMLINK_NOFOLLOW) }, nil},
		{"utimensat", func() error {
			ts := []unix.Timespec{{Sec: 1000}, {Sec: 2000, Nsec: 5}}
			return UtimesNanoAt(dirFD, "e", ts, unix.AT_SYMLINK_NOFOLLOW)
		}, func() error {
			fi, err := os.Stat(at("e"))
			if err != nil || fi.ModTime().Unix() != 2000 || fi.ModTime().Nanosecond() != 5 {
				return errors.New("mtime not set")
			}
			return nil
		}},
		{"utimensat-bad-times", func() error {
			if err := UtimesNanoAt(dirFD, "e", nil, 0); !errors.Is(err, unix.EINVAL) {
				return errors.New("UtimesNanoAt without times did not fail with EINVAL")
			}
			return nil
		}, nil},
		{"missing", func() error {
			for _, err := range []error{
				Mkdirat(dirFD, "no/such", 0o700),
				Symlinkat("x", dirFD, "no/such"),
				Renameat2(dirFD, "no-such", dirFD, "x", 0),
				Linkat(dirFD, "no-such", dirFD, "x", 0),
				Fchmodat(dirFD, "no-such", 0o600),
			} {
				if !errors.Is(err, unix.ENOENT) {
					return errors.New("a call on a missing entry did not fail with ENOENT")
				}
			}
			return nil
		}, nil},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.check != nil {
			if err := s.check(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
	}
}

func wantMode(path string, mode os.FileMode) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode() != mode {
		return errors.New(path + " has mode " + fi.Mode().String() + ", want " + mode.String())
	}
	return nil
}

// TestFileCalls reads a directory, seeks, truncates and works xattrs with
// the raw calls, next to their x/sys counterparts.
func TestFileCalls(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("0123456789"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dirFD, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirFD)

	got := make([]byte, 4096)
	n, err := Getdents(dirFD, got)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Seek(dirFD, 0, unix.SEEK_SET); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 4096)
	m, err := unix.Getdents(dirFD, want)
	if err != nil || !bytes.Equal(got[:n], want[:m]) {
		t.Errorf("Getdents read %d bytes, x/sys %d (%v)", n, m, err)
	}
	if _, err := Getdents(-1, got); !errors.Is(err, unix.EBADF) {
		t.Errorf("Getdents(-1): %v, want EBADF", err)
	}

	fd, err := unix.Open(filepath.Join(dir, "a"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if off, err := Seek(fd, 3, unix.SEEK_SET); off != 3 || err != nil {
		t.Errorf("Seek = %d, %v, want 3", off, err)
	}
	if _, err := Seek(fd, -1, unix.SEEK_SET); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Seek to -1: %v, want EINVAL", err)
	}
	if err := Ftruncate(fd, 4); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a")); string(b) != "0123" {
		t.Errorf("after Ftruncate(4): %q", b)
	}

	if err := Fsetxattr(fd, "user.k", []byte("v"), 0); errors.Is(err, unix.EOPNOTSUPP) {
		t.Skip("no user xattrs on the temporary directory's file system")
	} else if err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 8)
	if n, err := Fgetxattr(fd, "user.k", val); err != nil || string(val[:n]) != "v" {
		t.Errorf("Fgetxattr = %q, %v", val[:n], err)
	}
	if n, err := Fgetxattr(fd, "user.k", nil); err != nil || n != 1 {
		t.Errorf("Fgetxattr size query = %d, %v, want 1", n, err)
	}
	names := make([]byte, 64)
	n, err = Flistxattr(fd, names)
	wantNames := make([]byte, 64)
	m, werr := unix.Flistxattr(fd, wantNames)
	if err != nil || werr != nil || !bytes.Equal(names[:n], wantNames[:m]) {
		t.Errorf("Flistxattr = %q, %v; x/sys %q, %v", names[:n], err, wantNames[:m], werr)
	}
	if err := Fremovexattr(fd, "user.k"); err != nil {
		t.Fatal(err)
	}
	if _, err := Fgetxattr(fd, "user.k", val); !errors.Is(err, unix.ENODATA) {
		t.Errorf("Fgetxattr after Fremovexattr: %v, want ENODATA", err)
	}
}
