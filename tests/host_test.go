package tests

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHostChanges checks that changes made directly in the shared directory
// are seen through the mount: strictly with --cache=never, and within a
// bounded time (the kernel's entry timeout) with the default policy.
func TestHostChanges(t *testing.T) {
	requireMountEnv(t)
	for _, v := range []struct {
		name   string
		flags  []string
		strict bool // no caching: the change must be visible at once
	}{
		{"cache-never", []string{"--cache=never"}, true},
		{"cache-auto", nil, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			src, mnt := startMount(t, v.flags...)
			d := subdir(t, mnt, src, "h")

			// A file created on the host appears.
			mustWrite(t, d.h("created"), []byte("made on the host"), 0o644)
			wantContent(t, d.m("created"), []byte("made on the host"))
			if !contains(names(t, d.mnt), "created") {
				t.Errorf("readdir through the mount lacks the host-created file")
			}

			// A file renamed on the host is found under its new name, and
			// the old name goes away.
			mustWrite(t, d.h("old"), []byte("renamed on the host"), 0o644)
			ino := mustLstat(t, d.m("old")).Ino
			if err := os.Rename(d.h("old"), d.h("new")); err != nil {
				t.Fatal(err)
			}
			wantContent(t, d.m("new"), []byte("renamed on the host"))
			if got := mustLstat(t, d.m("new")).Ino; got != ino {
				t.Errorf("inode number under the new name: got %d, want %d", got, ino)
			}
			if v.strict {
				wantMissing(t, d.m("old"))
			} else {
				waitMissing(t, d.m("old"), 10*time.Second)
			}

			// A file removed on the host goes away.
			if err := os.Remove(d.h("created")); err != nil {
				t.Fatal(err)
			}
			if v.strict {
				wantMissing(t, d.m("created"))
			} else {
				waitMissing(t, d.m("created"), 10*time.Second)
			}
		})
	}
}

// waitMissing polls, for at most timeout, until path no longer exists.
func waitMissing(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var st unix.Stat_t
		err := unix.Lstat(path, &st)
		if err == unix.ENOENT {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s still resolves (lstat: %v) %v after it was removed on the host", path, err, timeout)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestContainment covers what the kernel's path walk lets a program do to
// leave the shared directory: ".." at the mount root is the kernel's, and
// symlinks are handed to the caller, not followed by the daemon.
func TestContainment(t *testing.T) {
	requireMountEnv(t)
	// The shared directory's parent holds a secret; the mount point has a
	// different parent, so reaching the secret through the mount would be
	// an escape from the shared directory.
	root := t.TempDir()
	src := filepath.Join(root, "outer", "share")
	mnt := filepath.Join(root, "mnt")
	for _, dir := range []string{src, mnt} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(root, "outer", "secret"), []byte("secret"), 0o600)
	startDaemon(t, src, mnt)

	// The root of the mount is the shared directory itself.
	if m, h := mustLstat(t, mnt), mustLstat(t, src); m.Ino != h.Ino {
		t.Errorf("inode of the mount root: got %d, want the shared directory's %d", m.Ino, h.Ino)
	}

	// A symlink to /etc in the shared directory reads as that symlink.
	if err := os.Symlink("/etc", filepath.Join(src, "etc-link")); err != nil {
		t.Fatal(err)
	}
	if st := mustLstat(t, filepath.Join(mnt, "etc-link")); st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("etc-link through the mount: mode %o, want a symlink", st.Mode)
	}
	if got, err := os.Readlink(filepath.Join(mnt, "etc-link")); err != nil || got != "/etc" {
		t.Errorf("readlink etc-link: got %q, %v; want %q", got, err, "/etc")
	}
	// Following it is the kernel's business, in the caller's namespace:
	// it leads to the caller's /etc, not to something the daemon served.
	var mntSt, followed, etc unix.Stat_t
	if err := unix.Stat(mnt, &mntSt); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join(mnt, "etc-link"), &followed); err != nil {
		t.Fatalf("stat through etc-link: %v", err)
	}
	if err := unix.Stat("/etc", &etc); err != nil {
		t.Fatal(err)
	}
	if followed.Dev != etc.Dev || followed.Ino != etc.Ino || followed.Dev == mntSt.Dev {
		t.Errorf("etc-link resolved to dev %d ino %d; want the caller's /etc (dev %d ino %d), not the mount (dev %d)",
			followed.Dev, followed.Ino, etc.Dev, etc.Ino, mntSt.Dev)
	}

	// ".." at the mount root, however reached, is the mount point's parent
	// (by the kernel's walk), never the shared directory's parent.
	if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	parent := mustLstat(t, root)
	for _, p := range []string{mnt + "/..", mnt + "/sub/../..", mnt + "/./sub/./../.."} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Errorf("stat %s: %v", p, err)
			continue
		}
		if st.Dev != parent.Dev || st.Ino != parent.Ino {
			t.Errorf("%s: dev %d ino %d, want the mount point's parent (dev %d ino %d)", p, st.Dev, st.Ino, parent.Dev, parent.Ino)
		}
	}
	for _, p := range []string{mnt + "/../secret", mnt + "/sub/../../secret"} {
		var st unix.Stat_t
		wantErrno(t, "stat "+p, unix.Stat(p, &st), unix.ENOENT)
	}

	// Names that look like escapes are ordinary names inside the share.
	for _, name := range []string{"...", "..a", ".. "} {
		if err := os.WriteFile(filepath.Join(mnt, name), []byte(name), 0o644); err != nil {
			t.Errorf("create %q: %v", name, err)
			continue
		}
		wantContent(t, filepath.Join(src, name), []byte(name))
	}
	if got := names(t, filepath.Join(root, "outer")); len(got) != 2 {
		t.Errorf("the shared directory's parent holds %q, want only share and secret", got)
	}
}
