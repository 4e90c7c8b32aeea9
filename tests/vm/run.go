package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Run is one test's working directory on the host. Chrooted processes see
// it as Assets.ChrootMountpoint (/e2e) and the shared directory as
// /e2e/shared; see the package documentation.
type Run struct {
	Assets *Assets
	// Dir is the host directory, a fresh t.TempDir.
	Dir string
	// SharedDir is the host directory the daemons serve: Dir/shared unless
	// NewRun was given another.
	SharedDir string
}

// NewRun creates a run directory. sharedDir is the directory to serve; ""
// means a fresh Dir/shared.
func NewRun(t testing.TB, a *Assets, sharedDir string) *Run {
	t.Helper()
	r := &Run{Assets: a, Dir: t.TempDir()}
	// The run directory is bound onto the chroot's /e2e: let every
	// process in the guest's world traverse it.
	if err := os.Chmod(r.Dir, 0o755); err != nil {
		t.Fatalf("chmod run directory: %v", err)
	}
	// Dir/shared is the shared directory itself or, for an outside one,
	// the mount point it is bound onto in the chroot.
	if err := os.Mkdir(filepath.Join(r.Dir, "shared"), 0o755); err != nil {
		t.Fatalf("creating the shared directory: %v", err)
	}
	r.SharedDir = filepath.Join(r.Dir, "shared")
	if sharedDir != "" {
		abs, err := filepath.Abs(sharedDir)
		if err != nil {
			t.Fatalf("shared directory: %v", err)
		}
		r.SharedDir = abs
	}
	return r
}

// Path returns the host path of name in the run directory.
func (r *Run) Path(name string) string { return filepath.Join(r.Dir, name) }

// ChrootPath returns how a chrooted process (QEMU, virtiofsd) sees hostPath,
// which must be inside the run directory or the shared directory.
func (r *Run) ChrootPath(hostPath string) (string, error) {
	mp := r.Assets.ChrootMountpoint
	if rel, ok := within(r.SharedDir, hostPath); ok {
		return filepath.Join(mp, "shared", rel), nil
	}
	if rel, ok := within(r.Dir, hostPath); ok {
		return filepath.Join(mp, rel), nil
	}
	return "", fmt.Errorf("%s is outside the run directory %s and the shared directory %s, so the chroot cannot see it",
		hostPath, r.Dir, r.SharedDir)
}

// MustChrootPath is ChrootPath for paths the harness made itself.
func (r *Run) MustChrootPath(t testing.TB, hostPath string) string {
	t.Helper()
	p, err := r.ChrootPath(hostPath)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// within reports whether p is dir or below it, and p relative to dir.
func within(dir, p string) (string, bool) {
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}

// chrootScript runs as sh -c in a fresh private mount namespace: it binds
// /proc, /dev, the run directory and, if given, an outside shared directory
// into the chroot, then execs the command there. Every exec replaces the
// process, so the process Go started becomes the command itself (its pid
// and rusage are the command's). Arguments: chroot, mount point, run
// directory, shared directory or "", then the command.
const chrootScript = `set -e
root=$1 mp=$2 run=$3 shared=$4
shift 4
mount --bind /proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$run" "$root$mp"
if [ -n "$shared" ]; then mount --bind "$shared" "$root$mp/shared"; fi
exec chroot "$root" "$@"
`

// Command returns a command that runs argv (paths as the chroot sees them)
// inside the chroot, with the run directory at /e2e. The command is killed
// if ctx ends or the test process dies.
func (r *Run) Command(ctx context.Context, argv ...string) *exec.Cmd {
	shared := ""
	if _, ok := within(r.Dir, r.SharedDir); !ok {
		shared = r.SharedDir
	}
	args := append([]string{"-m", "--propagation", "private", "--", "/bin/sh", "-c", chrootScript, "sh",
		r.Assets.Chroot, r.Assets.ChrootMountpoint, r.Dir, shared}, argv...)
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}
