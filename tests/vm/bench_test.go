package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchGroup is one guest boot of the comparison: the fsworkload -bench
// workloads it runs, and the ones whose times it reports (the others only
// prepare files).
type benchGroup struct {
	name     string
	run      string // -only
	report   []string
	flags    string // more fsworkload flags
	describe string
}

var benchGroups = []benchGroup{
	{"metadata", "small-create,small-stat,small-read,small-unlink", []string{"small-create", "small-stat", "small-read", "small-unlink"},
		"-bench-files 2000", "create, stat, read and unlink 2000 small files"},
	{"sequential", "seq-write,seq-read", []string{"seq-write", "seq-read"},
		"-bench-mib 256", "1 MiB writes then reads of a 256 MiB file"},
	{"random", "seq-write,rand-read", []string{"rand-read"},
		"-bench-mib 64 -bench-reads 4096", "4096 random 4 KiB reads of a 64 MiB file (daemon CPU includes writing it)"},
}

// BenchmarkGuestVsVirtiofsd boots the same guest workloads against ferryfs
// and virtiofsd 1.13, alternating runs (A B, B A, ...), and prints the
// median guest wall time of each workload and the median daemon CPU time of
// each group, with the ferryfs/virtiofsd ratios. It is a comparison for
// people (scripts/bench-vs-virtiofsd.sh), not a test: nothing is asserted.
//
// FERRYFS_BENCH_ROUNDS sets the number of rounds (default 3);
// FERRYFS_BENCH_FLAGS adds flags to both daemons (default --cache=auto);
// FERRYFS_BENCH_GROUPS picks groups (default all); FERRYFS_BENCH_OTHERS
// lists more ferryfs binaries to compare (comma-separated, each named by its
// file name), e.g. a build of the code before a change.
func BenchmarkGuestVsVirtiofsd(b *testing.B) {
	RequireVM(b)
	rounds := benchRounds(b)
	flags := benchFlags("--cache=auto")
	groups := selectedGroups(b)
	a := LoadAssets(b)
	files := GuestBinaries(b)
	daemons := []Daemon{
		Ferryfs{Binary: BuildFerryfs(b), Flags: flags},
		Virtiofsd{Flags: flags},
	}
	daemons = append(daemons, otherFerryfs(flags)...)
	// wall[daemon][workload] and cpu[daemon][group] collect every round.
	wall := map[string]map[string][]float64{}
	cpu := map[string]map[string][]float64{}
	for _, d := range daemons {
		wall[d.Name()], cpu[d.Name()] = map[string][]float64{}, map[string][]float64{}
	}
	for n := 0; n < b.N; n++ {
		for round := 0; round < rounds; round++ {
			for _, g := range groups {
				order := daemons
				if round%2 == 1 {
					order = slices.Clone(daemons)
					slices.Reverse(order)
				}
				for _, d := range order {
					res := bootBench(b, a, files, d, g)
					for _, r := range res.Bench {
						wall[d.Name()][r.Name] = append(wall[d.Name()][r.Name], r.Seconds)
					}
					cpu[d.Name()][g.name] = append(cpu[d.Name()][g.name], res.DaemonCPU.Seconds())
					fmt.Printf("round %d %-10s %-9s daemon CPU %6.2fs%s guest %s\n",
						round+1, g.name, d.Name(), res.DaemonCPU.Seconds(), usage(res.Daemon), res.Elapsed.Round(time.Millisecond))
				}
			}
		}
	}
	fmt.Printf("\nferryfs vs virtiofsd 1.13, %d rounds, flags %s (medians; ratio < 1 means ferryfs is faster)\n",
		rounds, strings.Join(flags, " "))
	printTable("guest wall time (s)", daemons, func(name string) {
		for _, g := range groups {
			for _, w := range g.report {
				printRatio(w, median(wall[name][w]), median(wall["virtiofsd"][w]))
			}
		}
	})
	printTable("daemon CPU time (s)", daemons, func(name string) {
		for _, g := range groups {
			printRatio(g.name+" ("+g.run+")", median(cpu[name][g.name]), median(cpu["virtiofsd"][g.name]))
		}
	})
	for _, g := range groups {
		fmt.Printf("  %s: %s\n", g.name, g.describe)
	}
}

// usage splits a stopped daemon's CPU time into user and system time and
// counts its page faults (touching guest memory for the first time costs
// the daemon a fault per page) and its voluntary and involuntary context
// switches (each wait for a kick is one, and so is each wake-up of a Go
// runtime thread).
func usage(p *Process) string {
	ru := p.Rusage()
	if ru == nil {
		return ""
	}
	return fmt.Sprintf(" (user %.2fs sys %.2fs, %d minor faults, %d+%d context switches)",
		time.Duration(syscall.TimevalToNsec(ru.Utime)).Seconds(), time.Duration(syscall.TimevalToNsec(ru.Stime)).Seconds(), ru.Minflt,
		ru.Nvcsw, ru.Nivcsw)
}

func bootBench(b *testing.B, a *Assets, files map[string]string, d Daemon, g benchGroup) *Result {
	b.Helper()
	run := NewRun(b, a, "")
	cmd := GuestFsworkload + " -bench -only " + g.run + " " + g.flags + " " + guestMountDir
	res, err := Boot(b, BootOptions{Run: run, Daemon: d, Files: files, Commands: []string{cmd}, Timeout: 20 * time.Minute})
	if err != nil {
		b.Fatalf("%s, %s: %v", d.Name(), g.name, err)
	}
	if res.Summary.Fail > 0 || len(res.Bench) == 0 {
		b.Fatalf("%s, %s: the workload failed:\n%s", d.Name(), g.name, res.Console)
	}
	return res
}

// selectedGroups returns the groups FERRYFS_BENCH_GROUPS names (comma
// separated), or all of them when it is unset.
func selectedGroups(b *testing.B) []benchGroup {
	b.Helper()
	env := os.Getenv("FERRYFS_BENCH_GROUPS")
	if env == "" {
		return benchGroups
	}
	var groups []benchGroup
	for _, name := range strings.Split(env, ",") {
		i := slices.IndexFunc(benchGroups, func(g benchGroup) bool { return g.name == name })
		if i < 0 {
			b.Fatalf("FERRYFS_BENCH_GROUPS=%q: no group %q (metadata, sequential, random)", env, name)
		}
		groups = append(groups, benchGroups[i])
	}
	return groups
}

// otherFerryfs returns the ferryfs builds FERRYFS_BENCH_OTHERS lists.
func otherFerryfs(flags []string) []Daemon {
	var ds []Daemon
	for _, bin := range strings.FieldsFunc(os.Getenv("FERRYFS_BENCH_OTHERS"), func(r rune) bool { return r == ',' }) {
		ds = append(ds, Ferryfs{Binary: bin, Flags: flags, Label: filepath.Base(bin)})
	}
	return ds
}

// benchRounds returns FERRYFS_BENCH_ROUNDS, the number of rounds of a
// comparison (default 3).
func benchRounds(b *testing.B) int {
	b.Helper()
	s := os.Getenv("FERRYFS_BENCH_ROUNDS")
	if s == "" {
		return 3
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("FERRYFS_BENCH_ROUNDS=%q: want a positive number", s)
	}
	return n
}

// benchFlags returns the daemon flags FERRYFS_BENCH_FLAGS sets, or
// defaults when it is unset or empty.
func benchFlags(defaults ...string) []string {
	if flags := strings.Fields(os.Getenv("FERRYFS_BENCH_FLAGS")); len(flags) > 0 {
		return flags
	}
	return defaults
}

// printTable prints a table's header, then the rows of each ferryfs build
// against virtiofsd, those of a build other than the main one under its
// name.
func printTable(title string, daemons []Daemon, rows func(name string)) {
	fmt.Printf("%-28s %12s %12s %8s\n", title, "ferryfs", "virtiofsd", "ratio")
	for _, d := range daemons {
		switch d.Name() {
		case "virtiofsd":
			continue
		case "ferryfs":
		default:
			fmt.Printf("%s:\n", d.Name())
		}
		rows(d.Name())
	}
}

func printRatio(name string, a, v float64) {
	ratio := "n/a"
	if v > 0 {
		ratio = fmt.Sprintf("%.2f", a/v)
	}
	fmt.Printf("%-28s %12.3f %12.3f %8s\n", name, a, v, ratio)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
