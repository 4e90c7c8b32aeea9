package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// MigrationStats is what QEMU's query-migrate reports for a completed
// migration.
type MigrationStats struct {
	TotalTime time.Duration
	Downtime  time.Duration
}

// migrationTimeout bounds one migration of a guest under TCG.
const migrationTimeout = 3 * time.Minute

// MigrateFrom live-migrates src's guest into m, which must have been
// started with Incoming and a QMPSocket (as src with a QMPSocket), over a
// loopback TCP connection (the two QEMUs run in separate mount
// namespaces). It returns once QEMU reports the migration completed, after
// telling the source QEMU to quit, or failed, when the guest keeps running
// on the source.
func (m *Machine) MigrateFrom(src *Machine) (MigrationStats, error) {
	var stats MigrationStats
	qd, err := m.DialQMP()
	if err != nil {
		return stats, fmt.Errorf("destination: %w", err)
	}
	defer qd.Close()
	qs, err := src.DialQMP()
	if err != nil {
		return stats, fmt.Errorf("source: %w", err)
	}
	defer qs.Close()
	port, err := freeLoopbackPort()
	if err != nil {
		return stats, err
	}
	uri := fmt.Sprintf("tcp:127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), migrationTimeout)
	defer cancel()
	// With a return path the destination tells the source whether it
	// loaded the state: a destination that fails (its back-end refusing
	// the device state) fails the migration on the source, whose guest
	// then runs on, instead of a "completed" migration to nowhere.
	caps := map[string]any{"capabilities": []map[string]any{{"capability": "return-path", "state": true}}}
	for _, q := range []*QMP{qd, qs} {
		if _, err := q.Execute(ctx, "migrate-set-capabilities", caps); err != nil {
			return stats, err
		}
	}
	if _, err := qd.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}); err != nil {
		return stats, err
	}
	if _, err := qs.Execute(ctx, "migrate", map[string]any{"uri": uri}); err != nil {
		return stats, err
	}
	for {
		ret, err := qs.Execute(ctx, "query-migrate", nil)
		if err != nil {
			return stats, err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
			TotalTime int64  `json:"total-time"`
			Downtime  int64  `json:"downtime"`
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			return stats, fmt.Errorf("query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			stats = MigrationStats{TotalTime: time.Duration(st.TotalTime) * time.Millisecond, Downtime: time.Duration(st.Downtime) * time.Millisecond}
			// The source is paused for good: quitting it disconnects
			// its daemon, which then exits.
			if _, err := qs.Execute(ctx, "quit", nil); err != nil && !errors.Is(err, net.ErrClosed) {
				m.t.Logf("quit the source QEMU: %v", err)
			}
			return stats, nil
		case "failed", "cancelled":
			return stats, fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return stats, fmt.Errorf("migration not done within %s (status %q)", migrationTimeout, st.Status)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitMigratedAway waits for the QEMU of a guest that migrated away to
// exit and stops its daemon; the error reports a daemon that did not exit
// cleanly (its guest's commands never finished here, by design).
func (m *Machine) WaitMigratedAway() (*Result, error) {
	defer m.cancel()
	<-m.proc.done
	<-m.copied
	res := &Result{Console: m.console.String(), Elapsed: time.Since(m.start), QEMUErr: m.proc.err, Daemon: m.Daemon}
	res.DaemonErr = m.Daemon.Stop()
	if err := os.WriteFile(m.Run.Path("console.log"), []byte(res.Console), 0o644); err != nil {
		m.t.Logf("saving the console log: %v", err)
	}
	if res.DaemonErr != nil {
		return res, fmt.Errorf("source daemon: %w", res.DaemonErr)
	}
	return res, nil
}

// freeLoopbackPort returns a TCP port nothing listens on now.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
