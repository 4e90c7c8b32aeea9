package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// checkReaddir5000 fills a directory with 5000 empty files and lists it twice,
// in one go and in chunks of 100 (many READDIR requests with offsets), each
// time expecting every name exactly once.
func checkReaddir5000(dir string, _ *options) (string, error) {
	const n = 5000
	want := make(map[string]bool, n)
	for i := range n {
		name := fmt.Sprintf("entry-%05d", i)
		want[name] = true
		// mknod makes an empty file in one request (MKNOD), where
		// open+close takes three (CREATE, FLUSH, RELEASE): under TCG
		// each round trip costs about half a millisecond.
		if err := unix.Mknod(filepath.Join(dir, name), unix.S_IFREG|0o644, 0); err != nil {
			return "", fmt.Errorf("mknod %s: %w", name, err)
		}
	}
	for _, chunk := range []int{-1, 100} {
		f, err := os.Open(dir)
		if err != nil {
			return "", err
		}
		seen := make(map[string]int, n)
		for {
			names, err := f.Readdirnames(chunk)
			for _, name := range names {
				seen[name]++
			}
			if chunk < 0 || errors.Is(err, io.EOF) {
				if chunk < 0 && err != nil {
					f.Close()
					return "", fmt.Errorf("readdir: %w", err)
				}
				break
			}
			if err != nil {
				f.Close()
				return "", fmt.Errorf("readdir in chunks of %d: %w", chunk, err)
			}
		}
		f.Close()
		if err := sameNames(seen, want); err != nil {
			return "", fmt.Errorf("readdir in chunks of %d: %w", chunk, err)
		}
	}
	return fmt.Sprintf("%d entries", n), nil
}

// sameNames reports names seen other than once, and names missing.
func sameNames(seen map[string]int, want map[string]bool) error {
	var dup, extra, missing []string
	for name, count := range seen {
		switch {
		case !want[name]:
			extra = append(extra, name)
		case count != 1:
			dup = append(dup, fmt.Sprintf("%s×%d", name, count))
		}
	}
	for name := range want {
		if seen[name] == 0 {
			missing = append(missing, name)
		}
	}
	if len(dup)+len(extra)+len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%d duplicated %s, %d unexpected %s, %d missing %s",
		len(dup), firstFew(dup), len(extra), firstFew(extra), len(missing), firstFew(missing))
}

// firstFew lists up to five names for an error message.
func firstFew(names []string) string {
	if len(names) > 5 {
		names = names[:5]
	}
	return fmt.Sprint(names)
}

// checkSmallFiles creates 3000 small files, then stats, reads and unlinks
// each, and expects the directory empty at the end.
func checkSmallFiles(dir string, _ *options) (string, error) {
	const n = 3000
	content := func(i int) []byte { return fmt.Appendf(nil, "small file %d\n", i) }
	name := func(i int) string { return filepath.Join(dir, fmt.Sprintf("s%04d", i)) }
	for i := range n {
		if err := os.WriteFile(name(i), content(i), 0o644); err != nil {
			return "", fmt.Errorf("create: %w", err)
		}
	}
	for i := range n {
		st, err := lstat(name(i))
		if err != nil {
			return "", err
		}
		if st.Size != int64(len(content(i))) {
			return "", fmt.Errorf("stat %s: size %d, want %d", name(i), st.Size, len(content(i)))
		}
	}
	for i := range n {
		if err := wantContent(name(i), content(i)); err != nil {
			return "", err
		}
	}
	for i := range n {
		if err := os.Remove(name(i)); err != nil {
			return "", fmt.Errorf("unlink: %w", err)
		}
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("readdir after unlinking all: %w", err)
	}
	if len(left) != 0 {
		return "", fmt.Errorf("%d entries left after unlinking all, first %q", len(left), left[0].Name())
	}
	return fmt.Sprintf("%d files", n), nil
}

// checkParallel runs four workers at once, each writing, renaming and
// rewriting its own files in its own directory, then verifies every file
// from one goroutine.
func checkParallel(dir string, _ *options) (string, error) {
	const workers, files = 4, 150
	content := func(w, i int) []byte { return pattern(w*1000+i, 8192+i) }
	path := func(w, i int) string { return filepath.Join(dir, fmt.Sprintf("w%d", w), fmt.Sprintf("f%03d", i)) }
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			errs[w] = parallelWorker(filepath.Join(dir, fmt.Sprintf("w%d", w)), files, func(i int) []byte { return content(w, i) })
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	for w := range workers {
		for i := range files {
			if err := wantContent(path(w, i), content(w, i)); err != nil {
				return "", fmt.Errorf("after all workers finished: %w", err)
			}
		}
		entries, err := os.ReadDir(filepath.Join(dir, fmt.Sprintf("w%d", w)))
		if err != nil {
			return "", err
		}
		if len(entries) != files {
			return "", fmt.Errorf("worker %d's directory has %d entries, want %d", w, len(entries), files)
		}
	}
	return fmt.Sprintf("%d workers × %d files", workers, files), nil
}

// parallelWorker writes each file under a temporary name, renames it into
// place and reads it back.
func parallelWorker(dir string, files int, content func(int) []byte) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for i := range files {
		tmp := filepath.Join(dir, fmt.Sprintf("tmp%03d", i))
		final := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		if err := os.WriteFile(tmp, content(i), 0o644); err != nil {
			return fmt.Errorf("%s: write: %w", dir, err)
		}
		if err := os.Rename(tmp, final); err != nil {
			return fmt.Errorf("%s: rename: %w", dir, err)
		}
		if err := wantContent(final, content(i)); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
	}
	return nil
}

// checkLargeFile writes o.largeMiB MiB in 1 MiB writes, empties the guest's
// page cache, reads the file back and compares SHA-256 sums.
func checkLargeFile(dir string, o *options) (string, error) {
	p := filepath.Join(dir, "large")
	chunk := pattern(3, 1<<20)
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	wsum := sha256.New()
	start := time.Now()
	for i := range o.largeMiB {
		// Stamp the chunk number so that misplaced chunks show.
		copy(chunk, fmt.Appendf(nil, "chunk %08d", i))
		wsum.Write(chunk)
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return "", fmt.Errorf("write chunk %d: %w", i, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close: %w", err)
	}
	wrote := time.Since(start)
	st, err := lstat(p)
	if err != nil {
		return "", err
	}
	if st.Size != int64(o.largeMiB)<<20 {
		return "", fmt.Errorf("size %d after writing %d MiB", st.Size, o.largeMiB)
	}
	cache := "page cache dropped"
	if err := dropCaches(o); err != nil {
		cache = "page cache NOT dropped: " + err.Error()
	}
	start = time.Now()
	f, err = os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	rsum := sha256.New()
	n, err := io.CopyBuffer(rsum, f, make([]byte, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read back after %d bytes: %w", n, err)
	}
	read := time.Since(start)
	if n != st.Size || !bytes.Equal(rsum.Sum(nil), wsum.Sum(nil)) {
		return "", fmt.Errorf("read back %d bytes with sha256 %x, wrote %d bytes with sha256 %x",
			n, rsum.Sum(nil), st.Size, wsum.Sum(nil))
	}
	return fmt.Sprintf("%d MiB, sha256 %x..., write %.1f MiB/s, read %.1f MiB/s, %s", o.largeMiB, wsum.Sum(nil)[:8],
		float64(o.largeMiB)/wrote.Seconds(), float64(o.largeMiB)/read.Seconds(), cache), nil
}
