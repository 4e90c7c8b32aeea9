package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Guest paths of the guest programs in the initramfs.
const (
	// GuestFsworkload is tests/guest/fsworkload.
	GuestFsworkload = "/bin/fsworkload"
	// GuestPosixTest is tests/guest/posix's test binary, which runs
	// go-fuse's posixtest suite against the directory given by -mnt.
	GuestPosixTest = "/bin/posix.test"
	// GuestCtl is tests/guest/guestctl: run as another user, read and
	// write extended attributes and ACLs.
	GuestCtl = "/bin/guestctl"
)

// GuestBinaries builds the programs that run in the guest, as static
// binaries (CGO_ENABLED=0), and returns them as BootOptions.Files. The go
// command's build cache makes this quick after the first time.
func GuestBinaries(t testing.TB) map[string]string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fsw, posix, ctl := filepath.Join(dir, "fsworkload"), filepath.Join(dir, "posix.test"), filepath.Join(dir, "guestctl")
	for _, args := range [][]string{
		{"build", "-o", fsw, "./tests/guest/fsworkload"},
		{"build", "-o", ctl, "./tests/guest/guestctl"},
		{"test", "-c", "-tags", "ferryfs_guest", "-o", posix, "./tests/guest/posix"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS="+guestGoflags())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	return map[string]string{GuestFsworkload: fsw, GuestPosixTest: posix, GuestCtl: ctl}
}

// guestGoflags returns $GOFLAGS without -race, which needs cgo: a test run
// with GOFLAGS=-race still gets static guest binaries.
func guestGoflags() string {
	var keep []string
	for _, f := range strings.Fields(os.Getenv("GOFLAGS")) {
		if f != "-race" && f != "-race=true" {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}
