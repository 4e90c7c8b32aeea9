package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tree of files the guest knows at migration time: benchDirs
// directories of benchFilesPerDir files each, under tree/ in the shared
// directory. Each file holds its own path relative to tree/ and a newline,
// so that a read after the migration shows it reached the right file.
const (
	benchDirs        = 10
	benchFilesPerDir = 1000
	benchFiles       = benchDirs * benchFilesPerDir
)

// benchFileName returns the path, relative to tree/, of file j of
// directory i.
func benchFileName(i, j int) string { return fmt.Sprintf("d%02d/f%04d", i, j) }

// makeBenchTree creates the tree in dir. The host creates it rather than
// the guest because the guest runs under TCG, where 10,000 creations take
// long; the guest still lists and stats every file itself (READDIRPLUS,
// LOOKUP), which is what makes the daemon hold an inode per file.
func makeBenchTree(dir string) error {
	for i := range benchDirs {
		d := filepath.Join(dir, "tree", fmt.Sprintf("d%02d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating the benchmark tree: %w", err)
		}
		for j := range benchFilesPerDir {
			name := benchFileName(i, j)
			if err := os.WriteFile(filepath.Join(dir, "tree", name), []byte(name+"\n"), 0o644); err != nil {
				return fmt.Errorf("creating the benchmark tree: %w", err)
			}
		}
	}
	return nil
}

// migrationBenchChecks is the number of MIGBENCH-OK lines a good run
// prints on the destination (migrationBenchScript's checks after the
// migration).
const migrationBenchChecks = 7

// migrationBenchScript is the guest's side of the benchmark, one shell so
// that its descriptors live through the migration. It lstats every file of
// the tree (ls -lR), so that the guest kernel holds an inode and a lookup
// count for each and the daemon must migrate them all; without memory
// pressure the kernel keeps them cached until the migration. It holds one
// file open, touches .ready and waits for the host's .migrated; then it
// checks on the destination that the held file, a few files of the tree
// and a directory's listing read as they should and that a new file can be
// written, so that a broken migration does not pass for a fast one.
func migrationBenchScript() string {
	held := benchFileName(3, 333)
	var reads strings.Builder
	for _, f := range []string{benchFileName(0, 0), benchFileName(benchDirs/2, benchFilesPerDir/2), benchFileName(benchDirs-1, benchFilesPerDir-1)} {
		fmt.Fprintf(&reads, "check 'read %s' \"$(cat tree/%s)\" %s\n", f, f, f)
	}
	return fmt.Sprintf(`
cd /mnt || exit 1
fail=0
check() {
	if [ "$2" = "$3" ]; then echo "MIGBENCH-OK $1"; else echo "MIGBENCH-MISMATCH $1: got '$2', want '$3'"; fail=1; fi
}
known=$(ls -lR tree | grep -c '^-')
echo "MIGBENCH-KNOWN $known"
[ "$known" = %[1]d ] || { echo "MIGBENCH-MISMATCH the guest sees $known files, want %[1]d"; exit 1; }
exec 3<tree/%[2]s
: > .ready
i=0
while [ ! -e .migrated ]; do
	i=$((i+1)); [ $i -lt 3000 ] || { echo "MIGBENCH-MISMATCH the host never said it migrated"; exit 1; }
	sleep 0.1
done
check held "$(cat <&3)" %[2]s
%[3]scheck readdir "$(ls tree/d%02[4]d | wc -l)" %[5]d
check stat "$(stat -c %%s tree/%[2]s)" %[6]d
echo post > post; check new-file "$(cat post)" post
exec 3<&-
exit $fail
`, benchFiles, held, reads.String(), benchDirs-1, benchFilesPerDir, len(held)+1)
}

// migrationBenchRun is what one migration measured.
type migrationBenchRun struct {
	Stats MigrationStats
	// SourceFDs is how many descriptors the source daemon had open just
	// before the migration. virtiofsd (with its default
	// --inode-file-handles=never) holds one per inode, so this shows that
	// it knew the whole tree; ferryfs caches at most
	// inodestore.DefaultFDCacheSize and says how many inodes it moved in
	// its log (Ferryfs).
	SourceFDs int
	// Ferryfs is what ferryfs's logs say about its state; nil for
	// virtiofsd, whose logs say nothing of a migration.
	Ferryfs *ferryfsStateLog
}

// BenchmarkMigrationVsVirtiofsd live-migrates a guest that knows 10,000
// files (it has looked up and stat'ed each) from one daemon to another of
// the same kind on the same shared directory, with QEMU 10, once with
// ferryfs and once with virtiofsd 1.13 per round, alternating the order
// (A B, B A, ...). It prints the medians of QEMU's reported downtime and
// total migration time per daemon, with the ferryfs/virtiofsd ratios, and
// the size of ferryfs's migration state. It is a comparison for people
// (scripts/bench-migration.sh), not a test: nothing is asserted about the
// times, but a migration that fails or after which the guest does not read
// its files correctly fails the benchmark.
//
// FERRYFS_BENCH_ROUNDS sets the number of rounds (default 3);
// FERRYFS_BENCH_FLAGS sets the flags of every daemon (default
// --cache=auto --migration-mode=find-paths; both daemons must accept them).
func BenchmarkMigrationVsVirtiofsd(b *testing.B) {
	RequireVM(b)
	rounds := benchRounds(b)
	flags := benchFlags("--cache=auto", "--migration-mode=find-paths")
	a := LoadAssets(b)
	daemons := []Daemon{
		Ferryfs{Binary: BuildFerryfs(b), Flags: flags},
		Virtiofsd{Flags: flags},
	}
	// downtime[daemon] and total[daemon] collect every round, in seconds.
	downtime := map[string][]float64{}
	total := map[string][]float64{}
	// What the ferryfs daemons logged of their states, every round.
	var stateInodes, stateBytes, stateSave, stateLoad []float64
	for n := 0; n < b.N; n++ {
		for round := 0; round < rounds; round++ {
			order := daemons
			if round%2 == 1 {
				order = []Daemon{daemons[1], daemons[0]}
			}
			for _, d := range order {
				r := benchMigration(b, a, d)
				downtime[d.Name()] = append(downtime[d.Name()], r.Stats.Downtime.Seconds())
				total[d.Name()] = append(total[d.Name()], r.Stats.TotalTime.Seconds())
				known := ""
				if f := r.Ferryfs; f != nil {
					stateInodes = append(stateInodes, float64(f.Inodes))
					stateBytes = append(stateBytes, float64(f.Bytes))
					stateSave = append(stateSave, f.Save.Seconds())
					stateLoad = append(stateLoad, f.Load.Seconds())
					known = fmt.Sprintf(", state of %d inodes", f.Inodes)
				}
				fmt.Printf("round %d %-9s downtime %s total %s; source daemon: %d descriptors open%s\n",
					round+1, d.Name(), r.Stats.Downtime, r.Stats.TotalTime, r.SourceFDs, known)
			}
		}
	}
	fmt.Printf("\nferryfs vs virtiofsd 1.13, live migration of a guest knowing %d files, %d rounds, flags %s (medians; ratio < 1 means ferryfs is faster)\n",
		benchFiles, rounds, strings.Join(flags, " "))
	fmt.Printf("%-28s %12s %12s %8s\n", "migration (s)", "ferryfs", "virtiofsd", "ratio")
	printRatio("downtime", median(downtime["ferryfs"]), median(downtime["virtiofsd"]))
	printRatio("total time", median(total["ferryfs"]), median(total["virtiofsd"]))
	if len(stateBytes) > 0 {
		fmt.Printf("ferryfs migration state (medians, from its logs): %.0f inodes, %.0f bytes; saved in %.3fs on the source, loaded in %.3fs on the destination (the guest is paused during both)\n",
			median(stateInodes), median(stateBytes), median(stateSave), median(stateLoad))
	}
}

// benchMigration runs one migration with daemon d on both sides and checks
// that the guest carried on correctly on the destination.
func benchMigration(b *testing.B, a *Assets, d Daemon) migrationBenchRun {
	b.Helper()
	run := NewRun(b, a, "")
	if err := makeBenchTree(run.SharedDir); err != nil {
		b.Fatal(err)
	}
	src := startMigrationSource(b, run, d, migrationBenchScript())
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", src.Daemon.Pid()))
	if err != nil {
		b.Fatalf("%s: counting the source daemon's descriptors: %v", d.Name(), err)
	}
	dst := startMigrationDestination(b, src, src.Run.SharedDir, d)
	stats, err := dst.MigrateFrom(src)
	if err != nil {
		b.Fatalf("%s: migration: %v\nsource daemon log:\n%s\ndestination daemon log:\n%s\ndestination QEMU:\n%s",
			d.Name(), err, src.Daemon.Log(), dst.Daemon.Log(), dst.proc.Log())
	}
	if err := os.WriteFile(filepath.Join(src.Run.SharedDir, ".migrated"), nil, 0o644); err != nil {
		b.Fatalf("telling the guest it migrated: %v", err)
	}
	if _, err := src.WaitMigratedAway(); err != nil {
		b.Fatalf("%s: %v\nlog:\n%s", d.Name(), err, src.Daemon.Log())
	}
	res, err := dst.Wait()
	if err != nil {
		b.Fatalf("%s: the guest on the destination: %v", d.Name(), err)
	}
	if err := checkMigrationBench(res); err != nil {
		res.LogDetails(b)
		b.Fatalf("%s: after the migration: %v", d.Name(), err)
	}
	if res.DaemonErr != nil {
		b.Fatalf("%s: destination: %v", d.Name(), res.DaemonErr)
	}
	r := migrationBenchRun{Stats: stats, SourceFDs: len(fds)}
	if _, ok := d.(Ferryfs); ok {
		// Only for the summary: a log that does not say is no failure.
		if f, err := parseFerryfsStateLog(src.Daemon.Log(), dst.Daemon.Log()); err != nil {
			b.Logf("ferryfs's migration state: %v", err)
		} else {
			r.Ferryfs = &f
		}
	}
	return r
}

// checkMigrationBench reports whether migrationBenchScript passed every
// check on the destination.
func checkMigrationBench(res *Result) error {
	var bad []string
	oks := 0
	for _, line := range strings.Split(res.Console, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "MIGBENCH-MISMATCH"):
			bad = append(bad, line)
		case strings.HasPrefix(line, "MIGBENCH-OK"):
			oks++
		}
	}
	if len(bad) > 0 || oks != migrationBenchChecks || res.Commands[0].ExitCode != 0 {
		return fmt.Errorf("%d checks passed, want %d; guest script exit status %d; %s",
			oks, migrationBenchChecks, res.Commands[0].ExitCode, strings.Join(bad, "; "))
	}
	return nil
}

// ferryfsStateLog is what a ferryfs source and destination logged of the
// migration state they moved.
type ferryfsStateLog struct {
	Inodes, Bytes int
	// Save is the source's time from the start of the device state
	// transfer to the state written; Load the destination's from the start
	// to the state applied (which includes waiting for the bytes).
	Save, Load time.Duration
}

// ferryfsLogLineRE matches one line of ferryfs's log (slog's text format)
// and captures the time, the message and the attributes after it.
var ferryfsLogLineRE = regexp.MustCompile(`(?m)^time=(\S+) level=\S+ msg="([^"]*)"(.*)$`)

// The state's size among the attributes of "migration state loaded"; \b
// keeps lost_inodes from matching.
var (
	stateInodesRE = regexp.MustCompile(`\binodes=(\d+)`)
	stateBytesRE  = regexp.MustCompile(`\bbytes=(\d+)`)
)

// parseFerryfsStateLog reads the state's size and the time taken to save
// and load it from the logs of a ferryfs source and destination.
func parseFerryfsStateLog(srcLog, dstLog string) (ferryfsStateLog, error) {
	var st ferryfsStateLog
	// times holds when each side started and finished; the attributes of
	// "migration state loaded" hold the size.
	times := map[string]time.Time{}
	var loadedAttrs string
	for side, log := range map[string]string{"save": srcLog, "load": dstLog} {
		for _, m := range ferryfsLogLineRE.FindAllStringSubmatch(log, -1) {
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				return st, fmt.Errorf("a log line's time: %w", err)
			}
			msg, attrs := m[2], m[3]
			switch {
			case msg == "device state transfer started" && strings.Contains(attrs, "direction="+side):
				times[side+" started"] = at
			case msg == "migration state saved" && side == "save":
				times["save done"] = at
			case msg == "migration state loaded" && side == "load":
				times["load done"] = at
				loadedAttrs = attrs
			}
		}
	}
	for _, k := range []string{"save started", "save done", "load started", "load done"} {
		if times[k].IsZero() {
			return st, fmt.Errorf("no log line for %q", k)
		}
	}
	st.Save = times["save done"].Sub(times["save started"])
	st.Load = times["load done"].Sub(times["load started"])
	for _, a := range []struct {
		re  *regexp.Regexp
		dst *int
	}{{stateInodesRE, &st.Inodes}, {stateBytesRE, &st.Bytes}} {
		m := a.re.FindStringSubmatch(loadedAttrs)
		if m == nil {
			return st, fmt.Errorf("the destination's log line %q lacks %s", "migration state loaded", a.re)
		}
		*a.dst, _ = strconv.Atoi(m[1])
	}
	return st, nil
}

// TestParseFerryfsStateLog reads the summary's figures from real ferryfs
// log lines, so that a change of those lines shows here rather than as a
// summary that quietly goes missing.
func TestParseFerryfsStateLog(t *testing.T) {
	src := `time=2026-11-21T14:18:04.900Z level=INFO msg="front-end connected"
time=2026-11-21T14:18:05.876Z level=INFO msg="device state transfer started" direction=save
time=2026-11-21T14:18:05.962Z level=INFO msg="migration state saved" mode=find-paths inodes=10013 handles=1 invalid_inodes=0 bytes=430487
`
	dst := `time=2026-11-21T14:18:05.961Z level=INFO msg="device state transfer started" direction=load
time=2026-11-21T14:18:06.128Z level=INFO msg="migration state loaded" mode=find-paths inodes=10013 handles=1 lost_inodes=0 lost_handles=0 bytes=430487
time=2026-11-21T14:18:06.128Z level=INFO msg="device state transfer succeeded" direction=load
`
	got, err := parseFerryfsStateLog(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	want := ferryfsStateLog{Inodes: 10013, Bytes: 430487, Save: 86 * time.Millisecond, Load: 167 * time.Millisecond}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseFerryfsStateLog(src, ""); err == nil {
		t.Error("a destination log without the state: no error")
	}
}
