package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/migrate"
	"github.com/ferryfs/ferryfs/passthrough"
)

// TestStateDumpOnSignal: SIGUSR1 writes the state a migration would send,
// which state inspect reads.
func TestStateDumpOnSignal(t *testing.T) {
	shared := t.TempDir()
	os.WriteFile(filepath.Join(shared, "known"), []byte("x"), 0o644)
	pfs, err := passthrough.New(passthrough.Options{SharedDir: shared})
	if err != nil {
		t.Fatal(err)
	}
	defer pfs.Close()
	srv := fuseproto.NewServer(pfs, fuseproto.ServerOptions{})
	dump := filepath.Join(t.TempDir(), "state")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// Before the guest mounted there is nothing to dump.
	if _, err := dumpState(srv, pfs, passthrough.ExportOptions{Mode: migrate.FindPaths}, dump); err == nil || !strings.Contains(err.Error(), "no FUSE session") {
		t.Fatalf("dump before INIT: %v", err)
	}
	srv.SetSession(fuseproto.Session{Major: 7, Minor: 38, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: 1})
	var out fuse.EntryOut
	if errno := pfs.Lookup(&fuseproto.Request{Header: fuse.InHeader{NodeId: 1}}, 1, "known", &out); errno != 0 {
		t.Fatal(errno)
	}

	stop := dumpStateOnSignal(context.Background(), log, srv, pfs, passthrough.ExportOptions{Mode: migrate.FindPaths}, dump)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(dump); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no state written after SIGUSR1")
		}
		time.Sleep(10 * time.Millisecond)
	}
	text, err := run(t, "state", "inspect", "--inodes", dump)
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, text)
	}
	if !strings.Contains(text, "inodes    2 (0 invalid, 0 unlinked while open)") || !strings.Contains(text, "/known") {
		t.Errorf("dumped state:\n%s", text)
	}
}
