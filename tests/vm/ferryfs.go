package vm

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

// Ferryfs is ferryfs's own vhost-user daemon, a host binary started as
//
//	ferryfs --socket-path=SOCK --shared-dir=DIR [Flags...]
//
// with host paths: the socket it creates in the run directory is the one
// QEMU finds under /e2e in the chroot.
type Ferryfs struct {
	// Binary is the ferryfs executable (BuildFerryfs builds one).
	Binary string
	// Flags are extra command-line flags, virtiofsd-compatible, e.g.
	// "--xattr".
	Flags []string
	// Label names this daemon in logs and benchmark results when two
	// ferryfs builds are compared; "" means "ferryfs".
	Label string
}

var _ Daemon = Ferryfs{}

// Name implements Daemon.
func (f Ferryfs) Name() string {
	if f.Label != "" {
		return f.Label
	}
	return "ferryfs"
}

// Start implements Daemon.
func (f Ferryfs) Start(t testing.TB, run *Run, socket string) (*Process, error) {
	t.Helper()
	argv := append([]string{"--socket-path=" + socket, "--shared-dir=" + run.SharedDir}, f.Flags...)
	cmd := exec.Command(f.Binary, argv...)
	p, err := startProcess(t, f.Name(), cmd)
	if err != nil {
		return nil, err
	}
	t.Logf("started ferryfs (pid %d): %s %v", p.Pid(), f.Binary, argv)
	if err := waitListening(context.Background(), p, socket); err != nil {
		return nil, fmt.Errorf("starting ferryfs: %w", err)
	}
	return p, nil
}

// BuildFerryfs builds ./cmd/ferryfs into a temporary directory and returns
// the binary's path.
func BuildFerryfs(t testing.TB) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "ferryfs")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ferryfs")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ferryfs: %v\n%s", err, out)
	}
	return bin
}

// FerryfsHasVhostUser reports whether the ferryfs binary has its vhost-user
// daemon mode, i.e. whether `ferryfs --help` offers --socket-path, and the
// help text for a skip message.
func FerryfsHasVhostUser(t testing.TB, bin string) (bool, string) {
	t.Helper()
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, out)
	}
	return bytes.Contains(out, []byte("--socket-path")), string(out)
}
