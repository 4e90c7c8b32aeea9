package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/migrate"
	"github.com/ferryfs/ferryfs/passthrough"
	"github.com/ferryfs/ferryfs/virtiofs"
)

// migrationConfig is what the --migration-* flags settled.
type migrationConfig struct {
	export  passthrough.ExportOptions
	onError migrate.OnError
}

// fsMigrator moves the passthrough file system's state through QEMU's
// device state channel: the source encodes what the guest knows, the
// destination decodes it (as untrusted bytes) and rebuilds it.
type fsMigrator struct {
	fs  *passthrough.FS
	cfg migrationConfig
	log *slog.Logger
}

var _ virtiofs.Migrator = (*fsMigrator)(nil)

// SaveState encodes the current state into w. Without a mount sess is
// zero, which the state reads as "not mounted".
func (m *fsMigrator) SaveState(w io.Writer, sess fuseproto.Session) error {
	st, err := m.fs.ExportState(m.cfg.export, sess)
	if err != nil {
		return err
	}
	b, err := migrate.Marshal(st)
	if err != nil {
		return err
	}
	invalid, unlinked := 0, 0
	for _, i := range st.Inodes {
		if i.Invalid != "" {
			invalid++
			m.log.Warn("inode cannot be migrated", "node", i.ID, "reason", i.Invalid)
		} else if i.Unlinked {
			unlinked++
		}
	}
	// From here on a destination may hold the orphans the state names.
	m.fs.KeepOrphans()
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write %d bytes of state: %w", len(b), err)
	}
	m.log.Info("migration state saved", "mode", st.Mode, "inodes", len(st.Inodes), "handles", len(st.Handles),
		"invalid_inodes", invalid, "unlinked_open", unlinked, "bytes", len(b))
	return nil
}

// LoadState reads a whole state from r, bounded, and applies it.
func (m *fsMigrator) LoadState(r io.Reader) (fuseproto.Session, bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, migrate.MaxEncodedSize+1))
	if err != nil {
		return fuseproto.Session{}, false, fmt.Errorf("read state: %w", err)
	}
	if len(b) > migrate.MaxEncodedSize {
		return fuseproto.Session{}, false, fmt.Errorf("state larger than %d bytes", migrate.MaxEncodedSize)
	}
	st, err := migrate.Unmarshal(b)
	if err != nil {
		return fuseproto.Session{}, false, err
	}
	if !st.Mounted() {
		m.log.Info("migration state loaded: the guest had not mounted")
		return fuseproto.Session{}, false, nil
	}
	rep, err := m.fs.ImportState(st, passthrough.ImportOptions{OnError: m.cfg.onError})
	if err != nil {
		return rep.Session, false, err
	}
	m.log.Info("migration state loaded", "mode", st.Mode, "inodes", len(st.Inodes), "handles", len(st.Handles),
		"lost_inodes", rep.LostInodes, "lost_handles", rep.LostHandles, "lost_at_source", rep.LostAtSource, "bytes", len(b))
	return rep.Session, true, nil
}
