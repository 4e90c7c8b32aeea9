package vm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestQMPAndLiveSharing boots a short guest with a QMP socket against
// virtiofsd. While the guest runs, the host asks QEMU for its status over
// QMP and then creates a file in the shared directory, which the guest is
// waiting (bounded polling) to see; the guest answers by writing a file
// back. It checks the QMP plumbing the migration tests will need and that
// host changes reach a running guest.
func TestQMPAndLiveSharing(t *testing.T) {
	a := LoadAssets(t)
	run := NewRun(t, a, "")
	// The guest polls for the host's file for at most 120 s (1200 × 0.1 s).
	wait := `i=0; while [ ! -e /mnt/from-host ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.1; done; cat /mnt/from-host > /mnt/from-guest`
	m, err := Start(t, BootOptions{
		Run:       run,
		Daemon:    Virtiofsd{},
		Commands:  []string{wait},
		QMPSocket: run.Path("qmp.sock"),
		Timeout:   5 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	q, err := m.DialQMP()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ret, err := q.Execute(context.Background(), "query-status", nil)
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := json.Unmarshal(ret, &status); err != nil || !status.Running {
		t.Errorf("query-status: %s (%v), want a running guest", ret, err)
	}
	if err := os.WriteFile(filepath.Join(run.SharedDir, "from-host"), []byte("ping\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := m.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if rc := res.Commands[0].ExitCode; rc != 0 {
		t.Errorf("guest command: exit status %d (it never saw the host's file?)", rc)
	}
	if got, err := os.ReadFile(filepath.Join(run.SharedDir, "from-guest")); err != nil || string(got) != "ping\n" {
		t.Errorf("the guest's answer: %q, %v; want %q", got, err, "ping\n")
	}
	if res.DaemonErr != nil {
		t.Errorf("virtiofsd: %v", res.DaemonErr)
	}
}
