package vhostfront

import (
	"strings"
	"testing"
)

// TestShutdownLogsNoError: a front-end that goes away with every queue
// running (a guest powering off) ends the daemon without an error in its
// log. The kick poller used to watch the kick descriptors of rings that
// had closed them already, and logged "kick descriptor cannot be waited
// for ... bad file descriptor" for some of them.
func TestShutdownLogsNoError(t *testing.T) {
	for range 5 {
		d, f, _ := startAndConnect(t, Options{})
		for i := range 17 {
			if _, err := f.StartQueue(i, 64); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := NewFUSE(f.Queues[1]).Init(); err != nil {
			t.Fatal(err)
		}
		closeAndCheck(t, d, f)
		if out := d.Output(); strings.Contains(out, "level=ERROR") || strings.Contains(out, "ERROR") {
			t.Fatalf("errors logged at an ordinary shutdown:\n%s", out)
		}
	}
}
