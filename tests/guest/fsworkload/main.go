// Command fsworkload exercises a mounted file system with ordinary system
// calls and reports each check on its own line of standard output, for a host
// reading a virtual machine's serial console:
//
//	FERRYFS-RESULT <check> PASS|FAIL|SKIP <detail>
//	FERRYFS-DONE pass=N fail=M skip=K
//
// In -bench mode it times fixed workloads instead and prints
//
//	FERRYFS-BENCH <name> <seconds>
//
// (a workload that fails prints a FERRYFS-RESULT FAIL line instead).
//
// Every check works in its own subdirectory of <mount>/fsworkload and removes
// it when it passes. Durations appear in the details as information only;
// nothing here asserts on time. It runs inside ferryfs's test guests (see
// tests/vm), built with CGO_ENABLED=0 so it needs nothing from the guest.
//
// Usage:
//
//	fsworkload [-only a,b] [-xattr=false] [-large-mib 100] [-drop-caches=false] [-statfs-type 0] <mount dir>
//	fsworkload -bench [-only a,b] [-bench-files N] [-bench-mib N] [-bench-reads N] <mount dir>
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Result line prefixes, parsed by tests/vm.
const (
	resultPrefix = "FERRYFS-RESULT"
	donePrefix   = "FERRYFS-DONE"
	benchPrefix  = "FERRYFS-BENCH"
)

// options holds the command line.
type options struct {
	xattr      bool // the daemon was started with xattr support
	largeMiB   int  // size of the large-file check's file
	benchFiles int  // files in the bench small-file workloads
	benchMiB   int  // size of the bench sequential file
	benchReads int  // 4 KiB reads in the bench random-read workload
	// dropCaches empties the page cache before read-backs (guest only:
	// on a host it would slow everything else down).
	dropCaches bool
	// statfsType is the f_type statfs must report; 0 accepts any.
	statfsType int64
}

// errSkip marks a check that cannot run in this configuration; its message
// is the reason.
type errSkip struct{ reason string }

func (e errSkip) Error() string { return "skipped: " + e.reason }

// check is one named test of the file system. run gets a fresh, empty
// directory and returns a short detail for the report, or an error.
type check struct {
	name string
	run  func(dir string, o *options) (detail string, err error)
}

func main() {
	var o options
	only := flag.String("only", "", "comma-separated names of the checks (or, with -bench, workloads) to run; default all")
	bench := flag.Bool("bench", false, "time the benchmark workloads instead of running the checks")
	list := flag.Bool("list", false, "print the names of the checks and workloads and exit")
	flag.BoolVar(&o.xattr, "xattr", true, "the file system supports user.* xattrs; when false, an ENOTSUP xattr check reports SKIP instead of FAIL")
	flag.IntVar(&o.largeMiB, "large-mib", 100, "size in MiB of the large-file check's file")
	flag.IntVar(&o.benchFiles, "bench-files", 2000, "number of small files in the bench small-* workloads")
	flag.IntVar(&o.benchMiB, "bench-mib", 256, "size in MiB of the bench seq-* file")
	flag.IntVar(&o.benchReads, "bench-reads", 4096, "number of 4 KiB reads in the bench rand-read workload")
	flag.BoolVar(&o.dropCaches, "drop-caches", true, "empty the page cache (/proc/sys/vm/drop_caches) before reading data back, so reads reach the file system's server; meant for test guests")
	flag.Int64Var(&o.statfsType, "statfs-type", fuseSuperMagic, "f_type the statfs check expects (default FUSE_SUPER_MAGIC); 0 accepts any")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] <mount dir>\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *list {
		for _, c := range checks {
			fmt.Println("check", c.name)
		}
		for _, w := range benchWorkloads {
			fmt.Println("bench", w)
		}
		return
	}
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	mnt := flag.Arg(0)
	// Modes in the checks are exact; do not let the umask change them.
	syscall.Umask(0)

	var selected map[string]bool
	if *only != "" {
		selected = map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			selected[strings.TrimSpace(n)] = true
		}
		if err := checkNames(selected, *bench); err != nil {
			fmt.Fprintln(os.Stderr, "fsworkload:", err)
			os.Exit(2)
		}
	}

	base := filepath.Join(mnt, "fsworkload")
	if err := os.MkdirAll(base, 0o755); err != nil {
		fmt.Printf("%s setup FAIL mkdir %s: %s\n", resultPrefix, base, oneLine(err.Error()))
		fmt.Printf("%s pass=0 fail=1 skip=0\n", donePrefix)
		os.Exit(1)
	}
	var pass, fail, skip int
	if *bench {
		pass, fail = runBench(os.Stdout, base, &o, selected)
	} else {
		pass, fail, skip = runChecks(os.Stdout, base, &o, selected)
	}
	fmt.Printf("%s pass=%d fail=%d skip=%d\n", donePrefix, pass, fail, skip)
	if fail > 0 {
		os.Exit(1)
	}
}

// checkNames reports names in selected that are neither checks nor (in
// bench mode) workloads, so a typo fails loudly instead of running nothing.
func checkNames(selected map[string]bool, bench bool) error {
	known := map[string]bool{}
	if bench {
		for _, w := range benchWorkloads {
			known[w] = true
		}
	} else {
		for _, c := range checks {
			known[c.name] = true
		}
	}
	var unknown []string
	for n := range selected {
		if !known[n] {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("unknown names in -only: %s (see -list)", strings.Join(unknown, ","))
	}
	return nil
}

// runChecks runs the selected checks (nil: all) in order and prints one
// result line for each to w.
func runChecks(w io.Writer, base string, o *options, selected map[string]bool) (pass, fail, skip int) {
	for _, c := range checks {
		if selected != nil && !selected[c.name] {
			continue
		}
		start := time.Now()
		detail, err := runOne(base, c, o)
		took := fmt.Sprintf("(%.2fs)", time.Since(start).Seconds())
		var s errSkip
		switch {
		case errors.As(err, &s):
			skip++
			fmt.Fprintf(w, "%s %s SKIP %s %s\n", resultPrefix, c.name, oneLine(s.reason), took)
		case err != nil:
			fail++
			fmt.Fprintf(w, "%s %s FAIL %s %s\n", resultPrefix, c.name, oneLine(err.Error()), took)
		default:
			pass++
			fmt.Fprintf(w, "%s %s PASS %s %s\n", resultPrefix, c.name, oneLine(detail), took)
		}
	}
	return pass, fail, skip
}

// runOne gives c a fresh directory, runs it and removes the directory if
// the check passed (a failed check leaves it for inspection).
func runOne(base string, c check, o *options) (string, error) {
	dir := filepath.Join(base, c.name)
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("removing leftovers of an earlier run: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the check's directory: %w", err)
	}
	detail, err := c.run(dir, o)
	if err != nil {
		return detail, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return detail, fmt.Errorf("passed, but removing its directory failed: %w", err)
	}
	return detail, nil
}

// oneLine keeps a detail on one console line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	return s
}
