package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// migrationScript is the guest's side of a migration test, one shell so
// that its descriptors live through the migration. Before: a file held
// open, a file held open in a directory then renamed, a hard-linked file
// held open through the link that remains after the other is removed, a
// read-write handle, a file unlinked while held open, a file held open
// while another is renamed over it, a working directory, and a writer
// appending lines through a held descriptor while the migration runs. It
// then touches
// .ready and waits for the host's .migrated; after: everything is read and
// written through the same descriptors on the destination. Each check
// prints MIGRATE-OK or MIGRATE-MISMATCH; the exit status is 1 on any
// mismatch.
const migrationScript = `
cd /mnt || exit 1
fail=0
check() {
	if [ "$2" = "$3" ]; then echo "MIGRATE-OK $1"; else echo "MIGRATE-MISMATCH $1: got '$2', want '$3'"; fail=1; fi
}
echo held-content > held; exec 3<held
mkdir d1; echo in-renamed-dir > d1/f; exec 4<d1/f; mv d1 d2
echo linked > a; ln a b; exec 5<b; rm a
echo rw-start > rw; exec 6<>rw
echo unlinked-content > u; exec 8<>u; rm u
echo replaced > r1; exec 9<r1; echo new > r2; mv r2 r1
mkdir wd; echo wd-file > wd/x
(
	i=0; exec 7>>stream
	while [ ! -e .migrated ] && [ $i -lt 200000 ]; do echo "line $i" >&7; i=$((i+1)); done
	echo $i > stream.count
) &
writer=$!
cd wd
: > /mnt/.ready
i=0
while [ ! -e /mnt/.migrated ]; do
	i=$((i+1)); [ $i -lt 1800 ] || { echo "MIGRATE-MISMATCH the host never said it migrated"; exit 1; }
	sleep 0.1
done
wait $writer
check cwd "$(cat x)" wd-file
check held "$(cat <&3)" held-content
check renamed-dir-handle "$(cat <&4)" in-renamed-dir
check renamed-dir-path "$(cat /mnt/d2/f)" in-renamed-dir
check hardlink-handle "$(cat <&5)" linked
check hardlink-nlink "$(stat -c %h /mnt/b)" 1
echo rw-after >&6
check rw-write "$(cat /mnt/rw)" rw-after
check unlinked-handle "$(cat <&8)" unlinked-content
check unlinked-nlink "$(stat -L -c %h /proc/self/fd/8)" 0
echo unlinked-more >&8
check unlinked-reopen "$(cat /proc/self/fd/8 | tr '\n' ' ')" "unlinked-content unlinked-more "
check replaced-handle "$(cat <&9)" replaced
check replaced-path "$(cat /mnt/r1)" new
lines=$(wc -l < /mnt/stream)
check stream-lines "$lines" "$(cat /mnt/stream.count)"
check stream-order "$(awk '$2 != NR-1 { bad++ } END { print bad+0 }' /mnt/stream)" 0
echo post > /mnt/post; check new-file "$(cat /mnt/post)" post
check host-file "$(cat /mnt/.migrated)" from-host
check readdir "$(ls -A /mnt | tr '\n' ' ')" ".migrated .ready b d2 held post r1 rw stream stream.count wd "
exec 3<&- 4<&- 5<&- 6<&- 8<&- 9<&-
echo "MIGRATE-LINES $lines"
exit $fail
`

// TestGuestMigration live-migrates a guest from one ferryfs to another on
// the same shared directory, in each migration mode, mid-workload, with
// QEMU 10, and checks that the guest's open files, working directory and
// ongoing writes carry on with zero mismatches. The files the guest removed
// while holding them open stay in the hidden directory while it holds them
// and are gone when it is done. The states of both daemons, the source's
// before the migration and the destination's after it, pass ferryfs state
// inspect and verify.
func TestGuestMigration(t *testing.T) {
	a := LoadAssets(t)
	bin := BuildFerryfs(t)
	for _, mode := range []string{"find-paths", "file-handles"} {
		t.Run(mode, func(t *testing.T) {
			dumps := t.TempDir()
			srcDump, dstDump := filepath.Join(dumps, "source.state"), filepath.Join(dumps, "destination.state")
			flags := []string{"--migration-mode=" + mode}
			src, dst := startMigrationPair(t, a,
				Ferryfs{Binary: bin, Flags: append(flags, "--state-dump="+srcDump)},
				Ferryfs{Binary: bin, Flags: append(flags, "--state-dump="+dstDump)}, migrationScript)
			shared := src.Run.SharedDir
			checkStateFile(t, bin, src.Daemon, srcDump, shared, mode)
			stats, err := dst.MigrateFrom(src)
			if err != nil {
				t.Fatalf("migration: %v\nsource daemon log:\n%s\ndestination daemon log:\n%s\ndestination QEMU:\n%s", err, src.Daemon.Log(), dst.Daemon.Log(), dst.proc.Log())
			}
			t.Logf("migration: total %s, downtime %s", stats.TotalTime, stats.Downtime)
			checkStateFile(t, bin, dst.Daemon, dstDump, shared, mode)
			if n := orphanCount(t, shared); n != 2 {
				t.Errorf("%d files in %s while the guest holds the unlinked and the replaced file, want 2", n, orphanDir)
			}
			if err := os.WriteFile(filepath.Join(src.Run.SharedDir, ".migrated"), []byte("from-host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := src.WaitMigratedAway(); err != nil {
				t.Errorf("%v\nlog:\n%s", err, src.Daemon.Log())
			}
			res, err := dst.Wait()
			if err != nil {
				t.Fatal(err)
			}
			checkMigrationScript(t, res)
			if res.DaemonErr != nil {
				t.Errorf("destination: %v", res.DaemonErr)
			}
			if got, err := os.ReadFile(filepath.Join(src.Run.SharedDir, "rw")); err != nil || string(got) != "rw-after\n" {
				t.Errorf("host's rw: %q, %v; want %q", got, err, "rw-after\n")
			}
			if n := orphanCount(t, shared); n != 0 {
				t.Errorf("%d files left in %s after the guest closed them", n, orphanDir)
			}
		})
	}
}

// orphanDir is where ferryfs keeps the files the guest removed while
// holding them open (passthrough.OrphanDir).
const orphanDir = ".ferryfs-orphans"

func orphanCount(t *testing.T, shared string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(shared, orphanDir))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(ents)
}

// checkStateFile has the running daemon write its state (SIGUSR1 with
// --state-dump=path) and runs ferryfs state inspect and state verify on
// it, as an operator would: the state must be valid, hold the two files
// unlinked while open, and every inode must be found under shared.
func checkStateFile(t *testing.T, bin string, daemon *Process, path, shared, mode string) {
	t.Helper()
	os.Remove(path)
	if err := syscall.Kill(daemon.Pid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no state dump at %s; daemon log:\n%s", path, daemon.Log())
		}
	}
	out, err := exec.Command(bin, "state", "inspect", "--inodes", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mode      "+mode) || !strings.Contains(string(out), "(0 invalid, 2 unlinked while open)") {
		t.Errorf("ferryfs state inspect: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "state", "verify", "--shared-dir", shared, path).CombinedOutput()
	if err != nil {
		t.Errorf("ferryfs state verify: %v\n%s", err, out)
	}
	t.Logf("state verify: %s", strings.TrimSpace(string(out)))
}

// startMigrationPair starts a source (startMigrationSource) and a
// destination on the same shared directory (startMigrationDestination).
func startMigrationPair(t *testing.T, a *Assets, srcDaemon, dstDaemon Daemon, script string) (src, dst *Machine) {
	t.Helper()
	src = startMigrationSource(t, NewRun(t, a, ""), srcDaemon, script)
	return src, startMigrationDestination(t, src, src.Run.SharedDir, dstDaemon)
}

// startMigrationSource boots a guest of run running script against daemon
// and waits until the guest says it is ready (.ready in the shared
// directory).
func startMigrationSource(t testing.TB, run *Run, daemon Daemon, script string) *Machine {
	t.Helper()
	src, err := Start(t, BootOptions{Run: run, Daemon: daemon, Commands: []string{script}, MemMiB: 512,
		QMPSocket: run.Path("qmp.sock"), Timeout: 10 * time.Minute})
	if err != nil {
		t.Fatalf("%s: starting the source: %v", daemon.Name(), err)
	}
	ready := filepath.Join(run.SharedDir, ".ready")
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return src
		}
		if time.Now().After(deadline) || src.proc.Exited() {
			t.Fatalf("%s: the guest never got ready; console:\n%s\ndaemon log:\n%s", daemon.Name(), src.Console(), src.Daemon.Log())
		}
	}
}

// startMigrationDestination starts the QEMU that waits for src's guest,
// with the same machine, against daemon serving sharedDir.
func startMigrationDestination(t testing.TB, src *Machine, sharedDir string, daemon Daemon) *Machine {
	t.Helper()
	run := NewRun(t, src.Run.Assets, sharedDir)
	opts := src.opts
	// Other socket names than the source's: QEMU and virtiofsd run in a
	// chroot where both are /e2e/NAME, and waiting for a socket goes by
	// that path.
	opts.Run, opts.Daemon, opts.QMPSocket, opts.Incoming = run, destinationDaemon{daemon}, run.Path("qmp-destination.sock"), true
	dst, err := Start(t, opts)
	if err != nil {
		t.Fatalf("%s: starting the destination: %v", daemon.Name(), err)
	}
	return dst
}

// destinationDaemon is a Daemon under another name, for the destination
// of a migration: Start names the vhost-user socket after the daemon, and
// a chrooted daemon (virtiofsd) binds it as /e2e/NAME.sock, the same path
// the source's has in its own mount namespace. Waiting for the socket goes
// by that path in /proc/net/unix, so with the same name it would find the
// source's socket.
type destinationDaemon struct{ Daemon }

// Name implements Daemon.
func (d destinationDaemon) Name() string { return d.Daemon.Name() + "-destination" }

// checkMigrationScript asserts that migrationScript passed every check on
// the destination.
func checkMigrationScript(t *testing.T, res *Result) {
	t.Helper()
	oks := 0
	for _, line := range strings.Split(res.Console, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "MIGRATE-MISMATCH"):
			t.Error(line)
		case strings.HasPrefix(line, "MIGRATE-OK"):
			oks++
		case strings.HasPrefix(line, "MIGRATE-LINES"):
			t.Log(line)
		}
	}
	if oks != 17 || res.Commands[0].ExitCode != 0 {
		t.Errorf("%d checks passed, want 17; guest script exit status %d", oks, res.Commands[0].ExitCode)
		res.LogDetails(t)
	}
}

// missingFileScript holds two files open, then reports after the
// migration (or its failure) what reading each gives.
const missingFileScript = `
cd /mnt || exit 1
echo keep > keep; echo lost > lost
exec 3<keep; exec 4<lost
: > .ready
i=0
while [ ! -e .migrated ]; do
	i=$((i+1)); [ $i -lt 1800 ] || { echo "MIGRATE-MISMATCH the host never said it migrated"; exit 1; }
	sleep 0.1
done
echo "MISSING-KEEP $(cat <&3)"
if out=$(cat <&4 2>&1); then echo "MISSING-LOST read $out"; else echo "MISSING-LOST error $out"; fi
`

// TestGuestMigrationMissingFile migrates to a destination whose copy of
// the shared directory lacks a file the guest holds open (find-paths: the
// copy has other inodes). With --migration-on-error=abort the migration
// fails and the guest carries on at the source with both files; with
// guest-error it completes and only the missing file gives an error
// (ESTALE) at the destination.
func TestGuestMigrationMissingFile(t *testing.T) {
	a := LoadAssets(t)
	bin := BuildFerryfs(t)
	for _, onError := range []string{"abort", "guest-error"} {
		t.Run(onError, func(t *testing.T) {
			src := startMigrationSource(t, NewRun(t, a, ""), Ferryfs{Binary: bin}, missingFileScript)
			srcRun := src.Run
			// The destination host's copy, without the file.
			copyDir := filepath.Join(t.TempDir(), "copy")
			if out, err := exec.Command("cp", "-a", srcRun.SharedDir, copyDir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			if err := os.Remove(filepath.Join(copyDir, "lost")); err != nil {
				t.Fatal(err)
			}
			dst := startMigrationDestination(t, src, copyDir, Ferryfs{Binary: bin, Flags: []string{"--migration-on-error=" + onError}})
			_, merr := dst.MigrateFrom(src)
			var res *Result
			var err error
			switch onError {
			case "abort":
				if merr == nil {
					t.Fatalf("migration succeeded; want it to fail. destination log:\n%s", dst.Daemon.Log())
				}
				t.Logf("migration failed as it should: %v", merr)
				if err := os.WriteFile(filepath.Join(srcRun.SharedDir, ".migrated"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if res, err = src.Wait(); err != nil {
					t.Fatal(err)
				}
				if log := dst.Daemon.Log(); !strings.Contains(log, "inodes not found") || !strings.Contains(log, `\"lost\"`) {
					t.Errorf("the destination's log does not name the missing file:\n%s", dst.Daemon.Log())
				}
				if !strings.Contains(res.Console, "MISSING-LOST read lost") {
					t.Errorf("at the source after the failed migration, the held file should still read")
				}
			case "guest-error":
				if merr != nil {
					t.Fatalf("migration: %v\ndestination log:\n%s", merr, dst.Daemon.Log())
				}
				if err := os.WriteFile(filepath.Join(copyDir, ".migrated"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if _, err := src.WaitMigratedAway(); err != nil {
					t.Error(err)
				}
				if res, err = dst.Wait(); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(res.Console, "MISSING-LOST error") || !strings.Contains(res.Console, "Stale file handle") {
					t.Errorf("reading the missing file at the destination should fail with ESTALE")
				}
			}
			if !strings.Contains(res.Console, "MISSING-KEEP keep") {
				t.Errorf("the file both sides have should read as before")
			}
			if t.Failed() {
				res.LogDetails(t)
			}
		})
	}
}
