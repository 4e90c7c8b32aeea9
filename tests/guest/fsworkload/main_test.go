package main

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"
)

// hostOptions run the checks on a host directory: smaller files, no
// dropping of the host's page cache, any file-system type, and xattrs
// allowed to be missing (tmpfs before Linux 6.6 has no user.* xattrs).
func hostOptions() *options {
	return &options{xattr: false, largeMiB: 8, benchFiles: 50, benchMiB: 4, benchReads: 100}
}

// TestChecksOnHost runs every check against a temporary directory on the
// host's file system, which validates the checks themselves: a check that
// fails on the host's kernel file system is a bug in the check.
func TestChecksOnHost(t *testing.T) {
	var out bytes.Buffer
	pass, fail, skip := runChecks(&out, t.TempDir(), hostOptions(), nil)
	t.Logf("output:\n%s", &out)
	if fail != 0 || pass+skip != len(checks) {
		t.Errorf("pass=%d fail=%d skip=%d, want %d checks without failures", pass, fail, skip, len(checks))
	}
	lines := resultLines(t, &out, resultPrefix)
	if len(lines) != len(checks) {
		t.Errorf("%d result lines, want %d", len(lines), len(checks))
	}
}

// TestBenchOnHost runs every bench workload on a small scale and wants one
// FERRYFS-BENCH line each.
func TestBenchOnHost(t *testing.T) {
	var out bytes.Buffer
	pass, fail := runBench(&out, t.TempDir(), hostOptions(), nil)
	t.Logf("output:\n%s", &out)
	if fail != 0 || pass != len(benchWorkloads) {
		t.Errorf("pass=%d fail=%d, want %d workloads without failures", pass, fail, len(benchWorkloads))
	}
	if lines := resultLines(t, &out, benchPrefix); len(lines) != len(benchWorkloads) {
		t.Errorf("%d bench lines, want %d", len(lines), len(benchWorkloads))
	}
}

// TestOnlySelects runs one check by name.
func TestOnlySelects(t *testing.T) {
	var out bytes.Buffer
	pass, fail, skip := runChecks(&out, t.TempDir(), hostOptions(), map[string]bool{"rename": true})
	if pass != 1 || fail+skip != 0 || !strings.Contains(out.String(), resultPrefix+" rename PASS") {
		t.Errorf("pass=%d fail=%d skip=%d, output:\n%s", pass, fail, skip, &out)
	}
	if err := checkNames(map[string]bool{"no-such-check": true}, false); err == nil {
		t.Error("checkNames accepted an unknown name")
	}
}

// resultLines returns the lines of out that start with prefix, checking
// each has a name and a status or number.
func resultLines(t *testing.T, out *bytes.Buffer, prefix string) []string {
	t.Helper()
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix+" ") {
			if len(strings.Fields(sc.Text())) < 3 {
				t.Errorf("malformed line %q", sc.Text())
			}
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

// TestMain clears the umask, as main does: the checks compare exact modes.
func TestMain(m *testing.M) {
	syscall.Umask(0)
	os.Exit(m.Run())
}
