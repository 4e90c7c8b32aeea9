package virtiofs

import (
	"fmt"
	"io"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/vhostuser"
)

// Migrator carries the file system's state across a live migration: what
// the guest knows (inodes, open handles) and the FUSE session it
// negotiated.
type Migrator interface {
	// SaveState writes the state of a guest that negotiated sess; a zero
	// sess means the guest has no session (it never mounted, or
	// unmounted).
	SaveState(w io.Writer, sess fuseproto.Session) error
	// LoadState reads a state SaveState wrote and applies it, all or
	// nothing, to a file system that has served nothing yet. It returns
	// the session to serve with, mounted false if there is none.
	LoadState(r io.Reader) (sess fuseproto.Session, mounted bool, err error)
}

// MigratableDevice is a Device whose state QEMU can migrate
// (VHOST_USER_PROTOCOL_F_DEVICE_STATE).
type MigratableDevice struct {
	*Device
	m Migrator
}

var _ vhostuser.StateDevice = (*MigratableDevice)(nil)

// WithMigration makes d migratable through m.
func WithMigration(d *Device, m Migrator) *MigratableDevice {
	return &MigratableDevice{Device: d, m: m}
}

// SaveState writes the state for the migration destination.
func (d *MigratableDevice) SaveState(w io.Writer) error {
	sess, _ := d.srv.Session() // zero without a session
	if err := d.m.SaveState(w, sess); err != nil {
		return fmt.Errorf("save the file system state: %w", err)
	}
	return nil
}

// LoadState applies a migration source's state; the guest's requests are
// then served in the source's session, without INIT.
func (d *MigratableDevice) LoadState(r io.Reader) error {
	if _, mounted := d.srv.Session(); mounted {
		return fmt.Errorf("load the file system state: the guest already mounted this daemon")
	}
	sess, mounted, err := d.m.LoadState(r)
	if err != nil {
		return fmt.Errorf("load the file system state: %w", err)
	}
	if mounted {
		d.srv.SetSession(sess)
	}
	return nil
}
