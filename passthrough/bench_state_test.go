package passthrough

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/fdlimit"
	"github.com/ferryfs/ferryfs/migrate"
)

// BenchmarkMigrationState measures what a live migration spends on the
// state of a guest that knows many inodes, on a real directory tree on the
// host, in both migration modes:
//
//   - save: ExportState and migrate.Marshal on the source, from the moment
//     the rings are stopped until the bytes are ready to send;
//   - load: migrate.Unmarshal and ImportState into a fresh file system on
//     the same directory, as the destination does before it serves;
//   - unmarshal: migrate.Unmarshal alone, the part of load that needs no
//     descriptors.
//
// Sub-benchmarks are named size/mode/{save,load,unmarshal}. Besides ns/op
// each reports ns/inode and the inode count; save and load split ns/inode
// between their two steps (export-, marshal-, unmarshal- and
// import-ns/inode) and report the encoded state's bytes per inode
// (state-B/inode), save its whole size too (state-B). B/op and allocs/op
// are per save or load of the whole state.
//
// The tree is built, and every object in it looked up through the file
// system as a guest's `find` would, once per size, and removed when that
// size is done. Sizes above FERRYFS_BENCH_STATE_MAX (10k, 100k or 1M;
// default 100k, 10k with -short) are skipped: the million files take a
// minute or two to build, look up and measure, and as many host inodes.
// scripts/bench-state.sh runs them all.
// The tree lives in a new directory under $TMPDIR (default /tmp), which must
// be on a file system with file handles: ext4, xfs, btrfs or tmpfs do;
// overlayfs without nfs_export does not.
//
// Both sides are configured as a deployment of that size must be (see
// stateBenchOptions): inodes referenced by file handle, with the daemon's
// descriptor budget. Root is needed: open_by_handle_at wants
// CAP_DAC_READ_SEARCH. The load holds a descriptor per directory while it
// resolves names (see raiseNofile).
//
// Every run is warm: the host's dentry and inode caches hold the tree, as
// they do for a migration between two daemons on one host. A destination
// on another host that shares the storage starts cold and takes longer.
// Source and destination share this process, so the load runs with the
// source's inodes on the heap too, which a destination daemon has not:
// its garbage collection costs a little less than here.
func BenchmarkMigrationState(b *testing.B) {
	if unix.Geteuid() != 0 {
		b.Skip("needs root: open_by_handle_at needs CAP_DAC_READ_SEARCH")
	}
	maxFiles, err := stateBenchMax(testing.Short())
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range stateSizes {
		b.Run(size.name, func(b *testing.B) {
			if size.files > maxFiles {
				b.Skipf("%s files: set FERRYFS_BENCH_STATE_MAX=%s to run it (see scripts/bench-state.sh)", size.name, size.name)
			}
			tree := newStateTree(b, size.files)
			for _, mode := range []migrate.Mode{migrate.FindPaths, migrate.FileHandles} {
				b.Run(string(mode), func(b *testing.B) {
					b.Run("save", func(b *testing.B) { benchSave(b, tree, mode) })
					b.Run("load", func(b *testing.B) { benchLoad(b, tree, mode) })
					b.Run("unmarshal", func(b *testing.B) { benchUnmarshal(b, tree, mode) })
				})
			}
		})
	}
}

// benchSave measures ExportState plus Marshal of everything tree's source
// knows.
func benchSave(b *testing.B, tree *stateTree, mode migrate.Mode) {
	b.ReportAllocs()
	var exportTime, marshalTime time.Duration
	var st *migrate.State
	var enc []byte
	for b.Loop() {
		t0 := time.Now()
		var err error
		st, err = tree.src.ExportState(ExportOptions{Mode: mode}, tree.sess)
		if err != nil {
			b.Fatalf("ExportState: %v", err)
		}
		t1 := time.Now()
		if enc, err = migrate.Marshal(st); err != nil {
			b.Fatalf("Marshal: %v", err)
		}
		exportTime += t1.Sub(t0)
		marshalTime += time.Since(t1)
	}
	// What was timed must have been the whole job: every inode described.
	if len(st.Inodes) != tree.inodes {
		b.Fatalf("state has %d inodes, the source knows %d", len(st.Inodes), tree.inodes)
	}
	for _, i := range st.Inodes {
		if i.Invalid != "" {
			b.Fatalf("inode %d not described: %s", i.ID, i.Invalid)
		}
	}
	tree.reportPerInode(b, "export", exportTime, "marshal", marshalTime)
	b.ReportMetric(float64(len(enc)), "state-B")
	b.ReportMetric(float64(len(enc))/float64(tree.inodes), "state-B/inode")
}

// benchLoad measures Unmarshal plus ImportState of tree's state, each time
// into a new file system on the same directory. Making and closing that
// file system is not timed: a destination daemon has started before the
// state arrives, and closing is not part of a migration.
func benchLoad(b *testing.B, tree *stateTree, mode migrate.Mode) {
	// ImportState holds a descriptor of every directory at once (in
	// find-paths mode), next to the source's cached ones and what any
	// daemon keeps for itself.
	need := uint64(tree.dirs + inodestore.DefaultFDCacheSize + fdlimit.MinReserve)
	if limit, err := raiseNofile(); err != nil {
		b.Fatal(err)
	} else if limit < need {
		b.Skipf("loading %d inodes needs RLIMIT_NOFILE %d, and it cannot be raised past %d here", tree.inodes, need, limit)
	}
	enc, err := tree.encoded(mode)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var unmarshalTime, importTime time.Duration
	for b.Loop() {
		b.StopTimer()
		dst, err := New(stateBenchOptions(tree.dir))
		if err != nil {
			b.Fatalf("destination: %v", err)
		}
		b.StartTimer()
		t0 := time.Now()
		st, err := migrate.Unmarshal(enc)
		if err != nil {
			b.Fatalf("Unmarshal: %v", err)
		}
		t1 := time.Now()
		rep, err := dst.ImportState(st, ImportOptions{OnError: migrate.Abort})
		if err != nil {
			b.Fatalf("ImportState: %v", err)
		}
		unmarshalTime += t1.Sub(t0)
		importTime += time.Since(t1)
		b.StopTimer()
		if n := dst.Store().Len(); n != tree.inodes || rep.LostInodes != 0 {
			b.Fatalf("destination knows %d inodes (%d lost), the source %d", n, rep.LostInodes, tree.inodes)
		}
		dst.Close()
		b.StartTimer()
	}
	tree.reportPerInode(b, "unmarshal", unmarshalTime, "import", importTime)
	b.ReportMetric(float64(len(enc))/float64(tree.inodes), "state-B/inode")
}

// benchUnmarshal measures migrate.Unmarshal alone, load's first step: it
// needs no descriptors, so it runs at sizes whose load cannot.
func benchUnmarshal(b *testing.B, tree *stateTree, mode migrate.Mode) {
	enc, err := tree.encoded(mode)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := migrate.Unmarshal(enc); err != nil {
			b.Fatalf("Unmarshal: %v", err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(tree.inodes), "ns/inode")
	b.ReportMetric(float64(tree.inodes), "inodes")
}

// stateSizes are the benchmarked sizes, by number of regular files; the
// inodes are a percent more, with the directories and the root.
var stateSizes = []struct {
	name  string
	files int
}{
	{"10k", 10_000},
	{"100k", 100_000},
	{"1M", 1_000_000},
}

// stateBenchMax returns the most files a size may have to run, from
// FERRYFS_BENCH_STATE_MAX (a size's name), by default the middle size, the
// smallest with -short.
func stateBenchMax(short bool) (int, error) {
	want := os.Getenv("FERRYFS_BENCH_STATE_MAX")
	if want == "" {
		if short {
			return stateSizes[0].files, nil
		}
		return stateSizes[1].files, nil
	}
	var names []string
	for _, s := range stateSizes {
		if s.name == want {
			return s.files, nil
		}
		names = append(names, s.name)
	}
	return 0, fmt.Errorf("FERRYFS_BENCH_STATE_MAX=%q: want one of %v", want, names)
}

// stateBenchOptions configures source and destination as a deployment
// whose guest knows a million inodes must be configured.
//
// Such a daemon cannot reference its inodes by O_PATH descriptor: with the
// default limit (fdlimit.Default, 1,000,000 descriptors) the guest's budget
// is 900,000, and the lookups run into EMFILE before the guest knows a
// million inodes. So inodes are referenced by file handle
// (--inode-file-handles), keeping only the descriptor cache's 4096 open,
// and the budget is the one the daemon computes from the default limit.
// Deployments would say prefer; mandatory behaves the same on a file
// system with handles and fails at once, rather than falling back to
// descriptors, on one without.
func stateBenchOptions(dir string) Options {
	return Options{
		SharedDir:        dir,
		InodeFileHandles: inodestore.FileHandlesMandatory,
		MaxGuestFDs:      fdlimit.Budget(fdlimit.Default()),
	}
}

// stateTree is a directory tree on the host and a source file system that
// has looked up every object in it.
type stateTree struct {
	dir    string
	src    *FS
	sess   fuseproto.Session
	inodes int // in the source's store, the root included
	dirs   int // of them
	// enc holds the state encoded in each mode, for the loads.
	enc map[migrate.Mode][]byte
}

// Shape of the tree: filesPerDir files in each leaf directory, leavesPerDir
// leaf directories in each top-level directory, so a million files make
// dir000/sub000/file000.dat through dir099/sub099/file099.dat. A hundred
// entries per directory is a source tree's or a home directory's order of
// magnitude; the names are short, as most are, and three levels are enough
// to keep every directory at about a hundred entries up to a million
// files. Every inode is sent as its parent's node and its own name, so the
// state's size follows the names' lengths, not the depth.
const (
	filesPerDir  = 100
	leavesPerDir = 100
)

// newStateTree builds a tree of the given number of regular files under
// $TMPDIR and looks up every object in it through a new source file
// system, as a guest walking the tree would. Both are removed when b's sub-benchmarks
// are done.
func newStateTree(b *testing.B, files int) *stateTree {
	b.Helper()
	dir, err := os.MkdirTemp("", "ferryfs-state-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			b.Errorf("remove the tree: %v", err)
		}
	})
	start := time.Now()
	if err := buildStateTree(dir, files); err != nil {
		b.Fatal(err)
	}
	// Write the new tree out now, or its writeback runs during the first
	// measurements and makes them the slowest.
	if err := syncFS(dir); err != nil {
		b.Fatal(err)
	}
	built := time.Since(start)

	src, err := New(stateBenchOptions(dir))
	if err != nil {
		b.Fatalf("source: %v", err)
	}
	b.Cleanup(func() { src.Close() })
	var out fuse.InitOut
	flags, errno := src.Init(^uint64(0), &out)
	if errno != 0 {
		b.Fatalf("Init: %v", errno)
	}
	start = time.Now()
	if err := lookupStateTree(src, files); err != nil {
		b.Fatal(err)
	}
	tree := &stateTree{
		dir:    dir,
		src:    src,
		sess:   fuseproto.Session{Major: 7, Minor: 38, Flags: flags, MaxWrite: 1 << 20, MaxPages: 256, TimeGran: out.TimeGran},
		inodes: src.Store().Len(),
		enc:    make(map[migrate.Mode][]byte),
	}
	tree.dirs = tree.inodes - files
	b.Logf("%s: %d files built in %v, %d inodes looked up in %v", dir, files, built.Round(time.Millisecond), tree.inodes, time.Since(start).Round(time.Millisecond))
	return tree
}

// raiseNofile raises RLIMIT_NOFILE as far as this process may (to
// /proc/sys/fs/nr_open with CAP_SYS_RESOURCE, to the hard limit without)
// and returns the limit in force.
//
// ImportState opens every inode of the state and holds all those
// descriptors until the store takes them over, whatever
// --inode-file-handles says: loading a million inodes needs a million
// descriptors, more than the daemon's default limit of 1,000,000 allows
// once its own are counted. The benchmark measures the load as it is, so
// it needs those descriptors too, and skips a load it cannot have them for.
func raiseNofile() (uint64, error) {
	limit, err := fdlimit.Raise(math.MaxUint64)
	if err != nil {
		return 0, fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	return limit, nil
}

// stateTreePath is the path of the k-th file of the tree, or, with file
// false, of the leaf directory it is in.
func stateTreePath(k int, file bool) string {
	leaf := k / filesPerDir
	p := fmt.Sprintf("dir%03d/sub%03d", leaf/leavesPerDir, leaf%leavesPerDir)
	if file {
		p += fmt.Sprintf("/file%03d.dat", k%filesPerDir)
	}
	return p
}

// buildStateTree creates files empty regular files beneath dir, their
// directories first. Empty files are enough: the state does not depend on
// what is in them. Top-level directories are filled in parallel, one per
// CPU at a time: they share no directory, so no lock.
func buildStateTree(dir string, files int) error {
	for k := 0; k < files; k += filesPerDir {
		if err := os.MkdirAll(filepath.Join(dir, stateTreePath(k, false)), 0o755); err != nil {
			return fmt.Errorf("build tree: %w", err)
		}
	}
	perTop := filesPerDir * leavesPerDir
	tops := (files + perTop - 1) / perTop
	next := make(chan int)
	errs := make(chan error, tops)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), tops) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for top := range next {
				for k := top * perTop; k < min(files, (top+1)*perTop); k++ {
					p := filepath.Join(dir, stateTreePath(k, true))
					// mknod makes the file without opening it.
					if err := unix.Mknod(p, unix.S_IFREG|0o644, 0); err != nil {
						errs <- fmt.Errorf("build tree: create %s: %w", p, err)
						break
					}
				}
			}
		}()
	}
	for top := range tops {
		next <- top
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs // nil when none failed
}

// syncFS writes out everything of the file system dir is on.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync the tree: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("sync the tree: %w", err)
	}
	return nil
}

// lookupStateTree looks up every directory and file of a tree of files
// files through fs, each once, parents before children, as a guest's
// `find` over the mount makes the kernel do.
func lookupStateTree(fs *FS, files int) error {
	var out fuse.EntryOut
	lookup := func(parent fuseproto.NodeID, name string) (fuseproto.NodeID, error) {
		if errno := fs.Lookup(req(parent), parent, name, &out); errno != 0 {
			return 0, fmt.Errorf("lookup %q in node %d: %w", name, parent, errno)
		}
		return fuseproto.NodeID(out.NodeId), nil
	}
	var top, leaf fuseproto.NodeID
	for k := range files {
		var err error
		if k%(filesPerDir*leavesPerDir) == 0 {
			if top, err = lookup(fuseproto.RootID, fmt.Sprintf("dir%03d", k/(filesPerDir*leavesPerDir))); err != nil {
				return err
			}
		}
		if k%filesPerDir == 0 {
			if leaf, err = lookup(top, fmt.Sprintf("sub%03d", k/filesPerDir%leavesPerDir)); err != nil {
				return err
			}
		}
		if _, err := lookup(leaf, fmt.Sprintf("file%03d.dat", k%filesPerDir)); err != nil {
			return err
		}
	}
	return nil
}

// encoded returns the source's state in mode, as Marshal encodes it, made
// once per mode (untimed) for the load benchmarks.
func (t *stateTree) encoded(mode migrate.Mode) ([]byte, error) {
	if enc, ok := t.enc[mode]; ok {
		return enc, nil
	}
	st, err := t.src.ExportState(ExportOptions{Mode: mode}, t.sess)
	if err != nil {
		return nil, fmt.Errorf("export %s state: %w", mode, err)
	}
	enc, err := migrate.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode %s state: %w", mode, err)
	}
	t.enc[mode] = enc
	return enc, nil
}

// reportPerInode reports the time per inode of a benchmark made of two
// steps, in total (ns/inode) and per step, and the number of inodes.
func (t *stateTree) reportPerInode(b *testing.B, step1 string, d1 time.Duration, step2 string, d2 time.Duration) {
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / float64(t.inodes) }
	b.ReportMetric(per(b.Elapsed()), "ns/inode")
	b.ReportMetric(per(d1), step1+"-ns/inode")
	b.ReportMetric(per(d2), step2+"-ns/inode")
	b.ReportMetric(float64(t.inodes), "inodes")
}
