package tests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestVersion checks that `ferryfs --version` prints a version and exits 0.
func TestVersion(t *testing.T) {
	res := runFerryfs(t, "--version")
	if res.exitCode != 0 {
		t.Fatalf("ferryfs --version: exit %d, want 0; stderr:\n%s", res.exitCode, res.stderr)
	}
	out := strings.TrimSpace(res.stdout + res.stderr)
	if f := strings.Fields(out); len(f) < 2 || !strings.Contains(out, "ferryfs") {
		t.Errorf("ferryfs --version printed %q, want the program name and a version", out)
	}
}

// TestMountErrors checks that bad mount arguments end the daemon with a
// non-zero status and a message naming what is wrong, and mount nothing.
func TestMountErrors(t *testing.T) {
	requireMountEnv(t)
	tmp := t.TempDir()
	share := filepath.Join(tmp, "share")
	file := filepath.Join(tmp, "file")
	okMnt := filepath.Join(tmp, "mnt")
	for _, dir := range []string{share, okMnt} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, file, nil, 0o644)
	missing := filepath.Join(tmp, "does-not-exist")

	cases := []struct {
		name      string
		args      []string
		wantInMsg string // the message must name this
	}{
		{"mount point missing", []string{"mount", "--shared-dir", share, missing}, missing},
		{"mount point is a file", []string{"mount", "--shared-dir", share, file}, file},
		{"shared dir missing", []string{"mount", "--shared-dir", missing, okMnt}, missing},
		{"shared dir is a file", []string{"mount", "--shared-dir", file, okMnt}, file},
		{"no mount point", []string{"mount", "--shared-dir", share}, ""},
		{"bad cache policy", []string{"mount", "--shared-dir", share, okMnt, "--cache=sometimes"}, "sometimes"},
		{"bad file handle mode", []string{"mount", "--shared-dir", share, okMnt, "--inode-file-handles=maybe"}, "maybe"},
		{"unknown flag", []string{"mount", "--shared-dir", share, okMnt, "--no-such-flag"}, "no-such-flag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := runFerryfs(t, c.args...)
			if res.exitCode == 0 {
				t.Errorf("ferryfs %s: exit 0, want an error", strings.Join(c.args, " "))
			}
			msg := res.stdout + res.stderr
			if strings.TrimSpace(msg) == "" {
				t.Errorf("ferryfs %s printed nothing, want an error message", strings.Join(c.args, " "))
			}
			if c.wantInMsg != "" && !strings.Contains(msg, c.wantInMsg) {
				t.Errorf("ferryfs %s: message %q does not name %q", strings.Join(c.args, " "), msg, c.wantInMsg)
			}
			for _, p := range []string{okMnt, file, missing} {
				if mounted, err := isFerryfsMount(p); err != nil || mounted {
					t.Errorf("%s mounted: %v, %v; want not mounted", p, mounted, err)
				}
			}
		})
	}
}

// TestSignals checks that SIGINT and SIGTERM unmount and exit with status 0
// (daemon.stop fails the test otherwise), keeping what was written.
func TestSignals(t *testing.T) {
	requireMountEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			src, mnt, d := startMountDaemon(t)
			mustWrite(t, filepath.Join(mnt, "f"), []byte("kept"), 0o644)
			d.stop(t, sig)
			if mounted, err := isFerryfsMount(mnt); err != nil || mounted {
				t.Errorf("after %v: mounted %v (%v), want unmounted", sig, mounted, err)
			}
			wantContent(t, filepath.Join(src, "f"), []byte("kept"))
			if got := names(t, mnt); len(got) != 0 {
				t.Errorf("mount point after unmount holds %q, want it empty", got)
			}
		})
	}
}

// TestRemount checks that a shared directory can be mounted again after a
// clean unmount and still holds what was written.
func TestRemount(t *testing.T) {
	src, mnt, d := startMountDaemon(t)
	mustWrite(t, filepath.Join(mnt, "f"), []byte("persisted"), 0o644)
	d.stop(t, syscall.SIGTERM)
	startDaemon(t, src, mnt)
	wantContent(t, filepath.Join(mnt, "f"), []byte("persisted"))
}
