package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// benchWorkloads lists the -bench workloads in the order they run. The
// small-* ones share their files (small-create makes what the others use),
// and seq-read and rand-read read the file seq-write writes, so -only
// should keep the earlier ones of a group when it names later ones.
var benchWorkloads = []string{
	"small-create", "small-stat", "small-read", "small-unlink",
	"seq-write", "seq-read", "rand-read",
}

// bench holds the state the workloads share.
type bench struct {
	dir string
	o   *options
}

// runBench times the selected workloads (nil: all) and prints to w a
// FERRYFS-BENCH line for each, or a FERRYFS-RESULT FAIL line if one fails. The guest's page cache is
// emptied before each read workload so that the reads reach the daemon.
func runBench(w io.Writer, base string, o *options, selected map[string]bool) (pass, fail int) {
	b := &bench{dir: filepath.Join(base, "bench"), o: o}
	if err := os.RemoveAll(b.dir); err != nil {
		fmt.Fprintf(w, "%s bench-setup FAIL removing leftovers: %s\n", resultPrefix, oneLine(err.Error()))
		return 0, 1
	}
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		fmt.Fprintf(w, "%s bench-setup FAIL %s\n", resultPrefix, oneLine(err.Error()))
		return 0, 1
	}
	run := map[string]func() error{
		"small-create": b.smallCreate,
		"small-stat":   b.smallStat,
		"small-read":   b.smallRead,
		"small-unlink": b.smallUnlink,
		"seq-write":    b.seqWrite,
		"seq-read":     b.seqRead,
		"rand-read":    b.randRead,
	}
	for _, name := range benchWorkloads {
		if selected != nil && !selected[name] {
			continue
		}
		if name == "small-read" || name == "seq-read" || name == "rand-read" {
			if err := dropCaches(o); err != nil && err != errNoDrop {
				fmt.Fprintf(w, "%s bench-%s FAIL %s\n", resultPrefix, name, oneLine(err.Error()))
				fail++
				continue
			}
		}
		start := time.Now()
		err := run[name]()
		took := time.Since(start)
		if err != nil {
			fmt.Fprintf(w, "%s bench-%s FAIL %s\n", resultPrefix, name, oneLine(err.Error()))
			fail++
			continue
		}
		fmt.Fprintf(w, "%s %s %.6f\n", benchPrefix, name, took.Seconds())
		pass++
	}
	if fail == 0 {
		if err := os.RemoveAll(b.dir); err != nil {
			fmt.Fprintf(w, "%s bench-cleanup FAIL %s\n", resultPrefix, oneLine(err.Error()))
			fail++
		}
	}
	return pass, fail
}

// small returns the path of small file i.
func (b *bench) small(i int) string { return filepath.Join(b.dir, fmt.Sprintf("small%06d", i)) }

// smallContent is what every small file holds: 1 KiB.
var smallContent = pattern(5, 1024)

func (b *bench) smallCreate() error {
	for i := range b.o.benchFiles {
		if err := os.WriteFile(b.small(i), smallContent, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) smallStat() error {
	for i := range b.o.benchFiles {
		if _, err := lstat(b.small(i)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) smallRead() error {
	for i := range b.o.benchFiles {
		if _, err := os.ReadFile(b.small(i)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) smallUnlink() error {
	for i := range b.o.benchFiles {
		if err := os.Remove(b.small(i)); err != nil {
			return err
		}
	}
	return nil
}

// seqFile is the file of the seq-* and rand-read workloads.
func (b *bench) seqFile() string { return filepath.Join(b.dir, "seq") }

// seqWrite writes benchMiB MiB in 1 MiB writes and fsyncs.
func (b *bench) seqWrite() error {
	f, err := os.Create(b.seqFile())
	if err != nil {
		return err
	}
	chunk := pattern(6, 1<<20)
	for range b.o.benchMiB {
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// seqRead reads the whole file in 1 MiB reads.
func (b *bench) seqRead() error {
	f, err := os.Open(b.seqFile())
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
	if err != nil {
		return err
	}
	if n != int64(b.o.benchMiB)<<20 {
		return fmt.Errorf("read %d bytes, want %d", n, int64(b.o.benchMiB)<<20)
	}
	return nil
}

// randRead makes benchReads 4 KiB reads at random 4 KiB-aligned offsets,
// from a fixed seed so every run reads the same blocks.
func (b *bench) randRead() error {
	f, err := os.Open(b.seqFile())
	if err != nil {
		return err
	}
	defer f.Close()
	blocks := int64(b.o.benchMiB) << 20 / 4096
	if blocks == 0 {
		return fmt.Errorf("the seq file is empty")
	}
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	for range b.o.benchReads {
		if _, err := f.ReadAt(buf, r.Int64N(blocks)*4096); err != nil {
			return err
		}
	}
	return nil
}
