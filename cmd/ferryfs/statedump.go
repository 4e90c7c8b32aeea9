package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/migrate"
	"github.com/ferryfs/ferryfs/passthrough"
)

// dumpStateOnSignal writes the migration state to path each time the
// daemon gets SIGUSR1, so that an operator can see what a migration would
// send without migrating. It returns what stops it.
//
// The rings keep running meanwhile: the state is a consistent snapshot of
// the tables at one instant, but requests after it are not in it.
func dumpStateOnSignal(ctx context.Context, log *slog.Logger, srv *fuseproto.Server, pfs *passthrough.FS, opts passthrough.ExportOptions, path string) func() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				n, err := dumpState(srv, pfs, opts, path)
				if err != nil {
					log.Error("state dump failed", "path", path, "err", err)
				} else {
					log.Info("state dumped", "path", path, "inodes", n)
				}
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		cancel()
		<-done
	}
}

// dumpState writes the state, as a migration with opts would send it,
// atomically (a reader never sees half of it) and returns the number of
// inodes in it.
func dumpState(srv *fuseproto.Server, pfs *passthrough.FS, opts passthrough.ExportOptions, path string) (int, error) {
	sess, ok := srv.Session()
	if !ok {
		return 0, fmt.Errorf("no FUSE session yet: the guest has not mounted")
	}
	st, err := pfs.ExportState(opts, sess)
	if err != nil {
		return 0, err
	}
	b, err := migrate.Marshal(st)
	if err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ferryfs-state-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	return len(st.Inodes), os.Rename(tmp.Name(), path)
}
