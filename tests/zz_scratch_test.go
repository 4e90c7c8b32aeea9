package tests

import (
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

func TestScratchRace(t *testing.T) {
	_, mnt, d := startMountDaemon(t, "--log-level=debug")
	posixtest.OpenSymlinkRace(t, mnt)
	out := d.output.String()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, "errno=12") {
			lo := max(0, i-6)
			t.Logf("CTX %d:\n%s", i, strings.Join(lines[lo:min(len(lines), i+2)], "\n"))
		}
	}
	d.output = &tailBuffer{max: 1}
}
