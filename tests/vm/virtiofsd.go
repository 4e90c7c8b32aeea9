package vm

import (
	"context"
	"fmt"
	"testing"
)

// Virtiofsd is the reference back-end, Rust virtiofsd (1.13 from trixie),
// run inside the chroot without its sandbox (the chroot and the test's
// private mount namespace stand in for it).
type Virtiofsd struct {
	// Flags are extra command-line flags, e.g. "--xattr".
	Flags []string
}

var _ Daemon = Virtiofsd{}

// Name implements Daemon.
func (Virtiofsd) Name() string { return "virtiofsd" }

// Start implements Daemon.
func (v Virtiofsd) Start(t testing.TB, run *Run, socket string) (*Process, error) {
	t.Helper()
	sock, err := run.ChrootPath(socket)
	if err != nil {
		return nil, err
	}
	shared, err := run.ChrootPath(run.SharedDir)
	if err != nil {
		return nil, err
	}
	argv := append([]string{run.Assets.Virtiofsd,
		"--socket-path=" + sock,
		"--shared-dir=" + shared,
		"--sandbox=none",
	}, v.Flags...)
	cmd := run.Command(context.Background(), argv...)
	p, err := startProcess(t, v.Name(), cmd)
	if err != nil {
		return nil, err
	}
	t.Logf("started virtiofsd (pid %d): %v", p.Pid(), argv)
	// virtiofsd binds the socket by its chroot path.
	if err := waitListening(context.Background(), p, sock); err != nil {
		return nil, fmt.Errorf("starting virtiofsd: %w", err)
	}
	return p, nil
}
