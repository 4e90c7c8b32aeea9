package vm

import (
	"os"
	"path/filepath"
	"testing"
)

// TestGuestQEMU72Ferryfs boots the guest with the host's QEMU 7.2
// (bookworm's) instead of the chroot's QEMU 10, to check the vhost-user
// back-end against the older front-end's messages, and runs the quicker
// fsworkload checks plus a file crossing in each direction.
func TestGuestQEMU72Ferryfs(t *testing.T) {
	RequireVM(t)
	a := LoadAssets(t)
	if a.HostQEMU == "" {
		t.Fatal("scripts/e2e-assets.sh did not provide the host's QEMU (HOST_QEMU)")
	}
	t.Logf("front-end: %s", a.HostQEMUPackage)
	files := GuestBinaries(t)
	run := NewRun(t, a, "")
	if err := os.WriteFile(filepath.Join(run.SharedDir, "from-host.txt"), []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checks := []string{"create-write-read", "rename", "hardlink", "symlink", "unlink", "mkdir-rmdir",
		"chmod", "truncate", "xattr", "append", "fsync", "statfs", "parallel-4"}
	only := ""
	for i, c := range checks {
		if i > 0 {
			only += ","
		}
		only += c
	}
	cmds := []string{
		GuestFsworkload + " -xattr=true -only " + only + " " + guestMountDir,
		`test "$(cat /mnt/from-host.txt)" = "hello from the host" && echo "hello from the guest" > /mnt/from-guest.txt`,
	}
	// With a worker pool: the other guest tests run the default, which
	// serves every request on the kick poller.
	res, err := Boot(t, BootOptions{Run: run, Daemon: Ferryfs{Binary: BuildFerryfs(t), Flags: []string{"--xattr", "--thread-pool-size=4"}},
		Files: files, Commands: cmds, HostQEMU: true})
	if err != nil {
		t.Fatalf("guest run: %v", err)
	}
	if res.DaemonErr != nil {
		t.Errorf("ferryfs: %v", res.DaemonErr)
	}
	checkFsworkload(t, res, checks)
	if rc := res.Commands[1].ExitCode; rc != 0 {
		t.Errorf("guest could not read the host's file or write its own: exit status %d", rc)
	}
	if got, err := os.ReadFile(filepath.Join(run.SharedDir, "from-guest.txt")); err != nil || string(got) != "hello from the guest\n" {
		t.Errorf("file the guest wrote, read on the host: %q, %v", got, err)
	}
	t.Logf("guest run %s, daemon CPU %s", res.Elapsed, res.DaemonCPU)
}
