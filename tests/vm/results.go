package vm

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Result is what a guest run produced.
type Result struct {
	// Console is the whole serial console output.
	Console string
	// Elapsed is QEMU's wall time, from start to exit.
	Elapsed time.Duration
	// TimedOut is set if the run hit BootOptions.Timeout.
	TimedOut bool
	// QEMUErr is QEMU's exit error, if any.
	QEMUErr error

	// Parsed from the console (results.go).
	Booted, Mounted, Finished bool
	InitError                 string // the step /init failed at, if any
	Commands                  []CommandResult
	UmountExitCode            int
	Checks                    []Check
	Summary                   Summary
	GoTests                   []GoTest
	Bench                     []BenchResult

	// Daemon is the stopped daemon; DaemonErr is what Stop reported and
	// DaemonCPU its user+system CPU time over its whole life.
	Daemon    *Process
	DaemonErr error
	DaemonCPU time.Duration
}

// Check is one FERRYFS-RESULT line of tests/guest/fsworkload.
type Check struct {
	Name   string
	Status string // PASS, FAIL or SKIP
	Detail string
}

// GoTest is one "--- PASS|FAIL|SKIP: Name" line of a Go test binary run
// with -test.v in the guest (e.g. tests/guest/posix).
type GoTest struct {
	Name   string // full name, e.g. "TestPosix/AppendWrite"
	Status string // PASS, FAIL or SKIP
}

// BenchResult is one FERRYFS-BENCH line of fsworkload -bench.
type BenchResult struct {
	Name    string
	Seconds float64
}

// CommandResult is one of BootOptions.Commands as the guest ran it.
type CommandResult struct {
	Command  string
	Started  bool
	ExitCode int // -1 if the command did not finish
}

// Summary is fsworkload's final FERRYFS-DONE line.
type Summary struct {
	Seen             bool
	Pass, Fail, Skip int
}

// Patterns of the lines the guest prints. They match anywhere in a line:
// the kernel may print into the middle of a console line.
var (
	checkRE   = regexp.MustCompile(`FERRYFS-RESULT (\S+) (PASS|FAIL|SKIP)(?: (.*))?$`)
	doneRE    = regexp.MustCompile(`FERRYFS-DONE pass=(\d+) fail=(\d+) skip=(\d+)`)
	benchRE   = regexp.MustCompile(`FERRYFS-BENCH (\S+) ([0-9.eE+-]+)`)
	goTestRE  = regexp.MustCompile(`--- (PASS|FAIL|SKIP): (\S+) \(`)
	cmdRE     = regexp.MustCompile(markerCmdBegin + ` (\d+)$`)
	cmdEndRE  = regexp.MustCompile(markerCmdEnd + ` (\d+) rc=(\d+)`)
	umountRE  = regexp.MustCompile(markerUmount + ` rc=(\d+)`)
	initErrRE = regexp.MustCompile(markerInitFail + ` (.*)$`)
)

// parseConsole fills r's parsed fields from the console text, for the
// given commands.
func (r *Result) parseConsole(cmds []string) {
	r.Commands = make([]CommandResult, len(cmds))
	for i, c := range cmds {
		r.Commands[i] = CommandResult{Command: c, ExitCode: -1}
	}
	r.UmountExitCode = -1
	for _, line := range strings.Split(r.Console, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.Contains(line, markerBooted):
			r.Booted = true
		case strings.Contains(line, markerMounted):
			r.Mounted = true
		case strings.Contains(line, markerEnd):
			r.Finished = true
		}
		if m := initErrRE.FindStringSubmatch(line); m != nil {
			r.InitError = m[1]
		}
		if m := cmdRE.FindStringSubmatch(line); m != nil {
			if i, _ := strconv.Atoi(m[1]); i < len(r.Commands) {
				r.Commands[i].Started = true
			}
		}
		if m := cmdEndRE.FindStringSubmatch(line); m != nil {
			i, _ := strconv.Atoi(m[1])
			rc, _ := strconv.Atoi(m[2])
			if i < len(r.Commands) {
				r.Commands[i].ExitCode = rc
			}
		}
		if m := umountRE.FindStringSubmatch(line); m != nil {
			r.UmountExitCode, _ = strconv.Atoi(m[1])
		}
		if m := checkRE.FindStringSubmatch(line); m != nil {
			r.Checks = append(r.Checks, Check{Name: m[1], Status: m[2], Detail: m[3]})
		}
		if m := doneRE.FindStringSubmatch(line); m != nil {
			r.Summary.Seen = true
			r.Summary.Pass, _ = strconv.Atoi(m[1])
			r.Summary.Fail, _ = strconv.Atoi(m[2])
			r.Summary.Skip, _ = strconv.Atoi(m[3])
		}
		if m := benchRE.FindStringSubmatch(line); m != nil {
			if s, err := strconv.ParseFloat(m[2], 64); err == nil {
				r.Bench = append(r.Bench, BenchResult{Name: m[1], Seconds: s})
			}
		}
		if m := goTestRE.FindStringSubmatch(line); m != nil {
			r.GoTests = append(r.GoTests, GoTest{Name: m[2], Status: m[1]})
		}
	}
}

// CheckStatus returns the status of the named fsworkload check, or "" if
// the guest did not report it.
func (r *Result) CheckStatus(name string) string {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Status
		}
	}
	return ""
}

// GoTestsUnder returns the results of the subtests of parent (e.g.
// "TestPosix"), keyed by subtest name without the parent's prefix.
func (r *Result) GoTestsUnder(parent string) map[string]string {
	out := map[string]string{}
	for _, g := range r.GoTests {
		if name, ok := strings.CutPrefix(g.Name, parent+"/"); ok {
			out[name] = g.Status
		}
	}
	return out
}

// describe summarises the parse, for failure messages.
func (r *Result) describe() string {
	return fmt.Sprintf("booted=%v mounted=%v finished=%v init-error=%q checks=%d go-tests=%d",
		r.Booted, r.Mounted, r.Finished, r.InitError, len(r.Checks), len(r.GoTests))
}

// err reports a run that did not get through its commands.
func (r *Result) err(timeout time.Duration, qemuLog string) error {
	var problem string
	switch {
	case r.TimedOut:
		problem = fmt.Sprintf("the guest did not power off within %s", timeout)
	case r.InitError != "":
		problem = "the guest's /init failed at: " + r.InitError
	case !r.Booted:
		problem = fmt.Sprintf("the guest never ran /init (QEMU: %v)", r.QEMUErr)
	case !r.Finished:
		problem = fmt.Sprintf("the guest stopped before the end of /init (QEMU: %v)", r.QEMUErr)
	case r.QEMUErr != nil:
		problem = fmt.Sprintf("QEMU failed: %v", r.QEMUErr)
	default:
		return nil
	}
	tail := qemuLog
	if tail != "" {
		tail = "\nQEMU stderr:\n" + tail
	}
	return fmt.Errorf("%s (%s)%s", problem, r.describe(), tail)
}

// LogDetails logs the console and the daemon's log.
func (r *Result) LogDetails(t testing.TB) {
	t.Helper()
	t.Logf("guest console:\n%s", r.Console)
	if r.Daemon != nil {
		t.Logf("%s log:\n%s", r.Daemon.Name(), r.Daemon.Log())
	}
}
