package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixExpect is the outcome a daemon is known to give for one posixtest
// case instead of PASS, with the reason.
type posixExpect struct {
	allowed []string // the statuses accepted: FAIL, SKIP, or PASS if it depends on the host
	reason  string
}

// virtiofsdPosix lists the posixtest cases that do not simply pass against
// virtiofsd 1.13.2 with --xattr, found by reading each case. Every case not
// listed must pass; a listed case must end in one of its allowed statuses.
var virtiofsdPosix = map[string]posixExpect{
	"FcntlFlockLocksFile": {[]string{"FAIL"}, "the case is wrong for POSIX locks: it expects F_SETLK on a second descriptor of the same process to conflict with the first, but a process's record locks never conflict with each other (fails on ext4 too; go-fuse's own TestAll skips it)"},
	"Tmpfile":             {[]string{"SKIP"}, "virtiofsd 1.13's passthrough has no tmpfile handler: FUSE_TMPFILE gets ENOSYS, which the kernel reports as EOPNOTSUPP, and the case skips"},
	"XAttrLarge":          xattrLargeExpect,
}

// xattrLargeExpect: the case stores an 8 KiB xattr value. The shared
// directory is a t.TempDir, and ext4 (a common TMPDIR) cannot hold a value
// that large (ENOSPC: the case skips), while tmpfs and xfs can (it passes).
var xattrLargeExpect = posixExpect{[]string{"SKIP", "PASS"}, "depends on the file system holding TMPDIR: ext4 cannot store the 8 KiB value (the case skips), tmpfs can"}

// ferryfsPosix is the same list for ferryfs.
var ferryfsPosix = map[string]posixExpect{
	"FcntlFlockLocksFile": virtiofsdPosix["FcntlFlockLocksFile"],
	"XAttrLarge":          xattrLargeExpect,
}

// TestGuestWorkloadVirtiofsd runs the guest workload (fsworkload, every
// check; posixtest, every case) over virtio-fs served by the reference
// daemon, virtiofsd 1.13 with --xattr. It validates the harness and the
// checks themselves against a known-good back-end.
func TestGuestWorkloadVirtiofsd(t *testing.T) {
	runGuestWorkload(t, Virtiofsd{Flags: []string{"--xattr"}}, virtiofsdPosix)
}

// TestGuestWorkloadFerryfs is the same workload over ferryfs's own
// vhost-user daemon. It skips until `ferryfs --help` offers --socket-path.
func TestGuestWorkloadFerryfs(t *testing.T) {
	RequireVM(t)
	bin := BuildFerryfs(t)
	if ok, help := FerryfsHasVhostUser(t, bin); !ok {
		t.Skipf("ferryfs has no vhost-user daemon mode yet: `ferryfs --help` does not offer --socket-path:\n%s", help)
	}
	runGuestWorkload(t, Ferryfs{Binary: bin, Flags: []string{"--xattr"}}, ferryfsPosix)
}

// Guest commands of the workload, by index in BootOptions.Commands.
const (
	cmdFsworkload = iota
	cmdPosix
	cmdHostFiles
)

// runGuestWorkload boots one guest against daemon and checks everything it
// reports: all fsworkload checks pass, every posixtest case runs and passes
// unless listed in posix, and files cross between host and guest.
func runGuestWorkload(t *testing.T, daemon Daemon, posix map[string]posixExpect) {
	a := LoadAssets(t)
	t.Logf("assets: %s", a)
	files := GuestBinaries(t)
	wantChecks := fsworkloadChecks(t, files[GuestFsworkload])

	run := NewRun(t, a, "")
	if err := os.WriteFile(filepath.Join(run.SharedDir, "from-host.txt"), []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmds := make([]string, 3)
	cmds[cmdFsworkload] = GuestFsworkload + " -xattr=true " + guestMountDir
	cmds[cmdPosix] = GuestPosixTest + " -test.v -test.timeout=10m -mnt " + guestMountDir + "/posix"
	cmds[cmdHostFiles] = `test "$(cat /mnt/from-host.txt)" = "hello from the host" && echo "hello from the guest" > /mnt/from-guest.txt`

	res, err := Boot(t, BootOptions{Run: run, Daemon: daemon, Files: files, Commands: cmds})
	if err != nil {
		t.Fatalf("guest run: %v", err)
	}
	if res.DaemonErr != nil {
		t.Errorf("%s: %v", daemon.Name(), res.DaemonErr)
	}
	if res.UmountExitCode != 0 {
		t.Errorf("umount /mnt in the guest: exit status %d", res.UmountExitCode)
	}

	checkFsworkload(t, res, wantChecks)
	checkPosix(t, res, posix)

	if rc := res.Commands[cmdHostFiles].ExitCode; rc != 0 {
		t.Errorf("guest could not read the host's file or write its own: exit status %d", rc)
	}
	if got, err := os.ReadFile(filepath.Join(run.SharedDir, "from-guest.txt")); err != nil || string(got) != "hello from the guest\n" {
		t.Errorf("file the guest wrote, read on the host: %q, %v; want %q", got, err, "hello from the guest\n")
	}
	t.Logf("%s: guest run %s, daemon CPU %s", daemon.Name(), res.Elapsed.Round(time.Millisecond), res.DaemonCPU)
}

// fsworkloadChecks asks the fsworkload binary (a static linux/amd64
// program, which runs on the host too) for its list of checks.
func fsworkloadChecks(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command(bin, "-list").Output()
	if err != nil {
		t.Fatalf("%s -list: %v", bin, err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, "check "); ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s -list named no checks:\n%s", bin, out)
	}
	return names
}

// checkFsworkload wants every check reported exactly once, as PASS.
func checkFsworkload(t *testing.T, res *Result, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, c := range res.Checks {
		seen[c.Name]++
		t.Logf("fsworkload %-18s %s %s", c.Name, c.Status, c.Detail)
		if c.Status != "PASS" {
			t.Errorf("fsworkload check %s: %s %s", c.Name, c.Status, c.Detail)
		}
	}
	for _, name := range want {
		if seen[name] != 1 {
			t.Errorf("fsworkload check %s reported %d times, want once", name, seen[name])
		}
	}
	if !res.Summary.Seen {
		t.Errorf("fsworkload printed no FERRYFS-DONE line (exit status %d)", res.Commands[cmdFsworkload].ExitCode)
	} else if res.Summary.Pass != len(want) || res.Summary.Fail != 0 || res.Summary.Skip != 0 {
		t.Errorf("fsworkload summary %+v, want pass=%d fail=0 skip=0", res.Summary, len(want))
	}
	if rc := res.Commands[cmdFsworkload].ExitCode; rc != 0 {
		t.Errorf("fsworkload exit status %d", rc)
	}
}

// checkPosix wants every posixtest case reported exactly once, passing
// unless listed in expected, and then with one of the listed statuses.
func checkPosix(t *testing.T, res *Result, expected map[string]posixExpect) {
	t.Helper()
	got := res.GoTestsUnder("TestPosix")
	var names []string
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	byStatus := map[string][]string{}
	for _, name := range names {
		status, ok := got[name]
		if !ok {
			t.Errorf("posixtest %s: no result in the console", name)
			continue
		}
		byStatus[status] = append(byStatus[status], name)
		exp, listed := expected[name]
		switch {
		case !listed && status != "PASS":
			t.Errorf("posixtest %s: %s", name, status)
		case listed && !slices.Contains(exp.allowed, status):
			t.Errorf("posixtest %s: %s, but listed as %v (%s): update the list", name, status, exp.allowed, exp.reason)
		case listed:
			t.Logf("posixtest %s: %s as expected: %s", name, status, exp.reason)
		}
	}
	for name := range expected {
		if _, ok := posixtest.All[name]; !ok {
			t.Errorf("expectation for posixtest %s, which posixtest.All does not have", name)
		}
	}
	t.Logf("posixtest: %d of %d cases pass; failed: %v; skipped: %v",
		len(byStatus["PASS"]), len(names), byStatus["FAIL"], byStatus["SKIP"])
}
