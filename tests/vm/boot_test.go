package vm

import (
	"strings"
	"testing"
	"time"
)

// TestBootTimeout checks that a guest that never finishes is killed at
// BootOptions.Timeout and reported as such, and that the daemon still ends
// cleanly.
func TestBootTimeout(t *testing.T) {
	a := LoadAssets(t)
	res, err := Boot(t, BootOptions{
		Run:      NewRun(t, a, ""),
		Daemon:   Virtiofsd{},
		Commands: []string{"echo before-the-hang", "sleep 3600", "echo after-the-hang"},
		Timeout:  30 * time.Second,
	})
	if err == nil || res == nil {
		t.Fatalf("Boot of a hanging guest: result %v, error %v; want a timeout error", res, err)
	}
	if !res.TimedOut || !strings.Contains(err.Error(), "did not power off within 30s") {
		t.Errorf("TimedOut=%v, error %q; want a timeout", res.TimedOut, err)
	}
	if strings.Contains(res.Console, "after-the-hang") {
		t.Errorf("the command after the hang ran:\n%s", res.Console)
	}
	// How far the guest got before the timeout depends on the machine's
	// speed; only that it never got past the hang does not.
	if res.Commands[2].Started || res.Finished {
		t.Errorf("the guest got past a command that never ends: %s, commands %+v", res.describe(), res.Commands)
	}
	t.Logf("at the timeout: %s, commands %+v", res.describe(), res.Commands)
	if res.DaemonErr != nil {
		t.Errorf("virtiofsd after QEMU was killed: %v", res.DaemonErr)
	}
}
