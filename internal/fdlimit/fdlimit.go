// Package fdlimit sizes the daemon's file descriptor limit (RLIMIT_NOFILE)
// the way virtiofsd does, and splits the resulting limit between descriptors
// held on the guest's behalf and those the daemon needs for itself.
//
// A passthrough file system holds an O_PATH descriptor for every inode the
// guest has looked up (unless it can use file handles) and one descriptor for
// every file the guest has open, so the usual soft limit of 1024 is exhausted
// by a single "find /" in the guest.
//
// The rules follow virtiofsd 1.13 (src/limits.rs, setup_rlimit_nofile):
//
//   - Without --rlimit-nofile the target is Default(), min(1,000,000,
//     /proc/sys/fs/nr_open). A soft limit already at least that high is left
//     alone; otherwise both limits are set to the target, and if that is not
//     permitted (an unprivileged daemon whose hard limit is lower) the soft
//     limit is raised to the hard limit instead. That is Raise.
//   - With --rlimit-nofile=N, N > 0, both limits are set to exactly N, which
//     may lower them: an operator running many daemons uses it to share out
//     the system-wide limit. N above nr_open, or a setrlimit failure, is an
//     error. That is Set.
//   - --rlimit-nofile=0 leaves the limits unchanged (a management tool has
//     set them already). Both Raise and Set treat 0 so.
package fdlimit

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// DefaultNofile is virtiofsd's default target for RLIMIT_NOFILE.
const DefaultNofile = 1_000_000

// nrOpenPath holds the kernel's ceiling for RLIMIT_NOFILE; setrlimit fails
// with EPERM above it even for root.
const nrOpenPath = "/proc/sys/fs/nr_open"

// MinReserve is the smallest number of descriptors Budget keeps back for the
// daemon itself. virtiofsd keeps 609 plus one per worker thread: one
// descriptor per vhost-user memory region (the vhost-user back-end supports
// 509), a hundred for everything else (the /dev/fuse or vhost-user socket,
// eventfds of the queues, the shared directory, /proc/self/fd, log output),
// and one per worker because a worker opens a descriptor before it can be
// counted against the guest's budget. 1024 covers that with several hundred
// workers.
const MinReserve = 1024

// Default returns the RLIMIT_NOFILE target used when none is configured:
// min(DefaultNofile, /proc/sys/fs/nr_open). If nr_open cannot be read it
// returns DefaultNofile; Raise then settles for what the kernel permits.
func Default() uint64 {
	return host.defaultLimit()
}

// Raise raises the soft RLIMIT_NOFILE to at least want and returns the soft
// limit now in force. It never lowers a limit: a soft limit already at or
// above want is returned unchanged, as it is for want 0. want above nr_open is
// capped at nr_open. When the hard limit is below want and may not be raised
// (no CAP_SYS_RESOURCE), the soft limit is raised to the hard limit and that
// is returned; callers compare the result with want to warn.
func Raise(want uint64) (uint64, error) {
	return host.raise(want)
}

// Set sets both the soft and the hard RLIMIT_NOFILE to exactly want, which
// may lower them, and returns want. want 0 leaves the limits unchanged and
// returns the current soft limit. want above /proc/sys/fs/nr_open is an error.
func Set(want uint64) (uint64, error) {
	return host.set(want)
}

// Budget returns how many descriptors may be held on the guest's behalf when
// the process may have limit open: limit minus a reserve of
// max(MinReserve, limit/10) for the daemon itself. The proportional part keeps
// headroom for bursts of transient descriptors (one per in-flight request)
// and for whatever a large deployment adds (more queues, more workers)
// without having to account for each. A limit too small for the reserve is
// split evenly instead of refused, so a deliberately tiny --rlimit-nofile
// still yields a working, if cramped, daemon. The result is at least 1, so it
// cannot be mistaken for "no limit".
func Budget(limit uint64) int {
	reserve := max(uint64(MinReserve), limit/10)
	if reserve >= limit {
		reserve = limit / 2
	}
	b := max(limit-reserve, 1)
	if b > math.MaxInt {
		return math.MaxInt
	}
	return int(b)
}

// system is the process state the rules read and change, replaceable in
// tests.
type system struct {
	nrOpen    func() (uint64, error)
	getrlimit func() (syscall.Rlimit, error)
	setrlimit func(syscall.Rlimit) error
}

var host = system{
	nrOpen: readNrOpen,
	getrlimit: func() (syscall.Rlimit, error) {
		var r syscall.Rlimit
		err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
		return r, err
	},
	// syscall.Setrlimit rather than x/sys/unix: it tells the runtime that
	// the limit was set on purpose, so child processes inherit it instead of
	// the soft limit the process started with.
	setrlimit: func(r syscall.Rlimit) error {
		return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	},
}

func readNrOpen() (uint64, error) {
	b, err := os.ReadFile(nrOpenPath)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", nrOpenPath, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", nrOpenPath, err)
	}
	return n, nil
}

func (s system) defaultLimit() uint64 {
	n, err := s.nrOpen()
	if err != nil {
		return DefaultNofile
	}
	return min(DefaultNofile, n)
}

func (s system) current() (syscall.Rlimit, error) {
	r, err := s.getrlimit()
	if err != nil {
		return r, fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	return r, nil
}

func (s system) raise(want uint64) (uint64, error) {
	cur, err := s.current()
	if err != nil {
		return 0, err
	}
	if want == 0 || cur.Cur >= want {
		return cur.Cur, nil
	}
	// Without nr_open the kernel still enforces it: setrlimit fails with
	// EPERM and we fall back to the hard limit below.
	if n, err := s.nrOpen(); err == nil && want > n {
		want = n
		if cur.Cur >= want {
			return cur.Cur, nil
		}
	}
	// Unlike virtiofsd, keep a hard limit that is already higher: lowering
	// it gains nothing and could not be undone without privilege.
	err = s.setrlimit(syscall.Rlimit{Cur: want, Max: max(cur.Max, want)})
	if err == nil {
		return want, nil
	}
	if !errors.Is(err, syscall.EPERM) {
		return 0, fmt.Errorf("raise RLIMIT_NOFILE from %d to %d: %w", cur.Cur, want, err)
	}
	// Not privileged to go past the hard limit: settle for it. The Go
	// runtime usually raised the soft limit to the hard one at start-up
	// already, and then there is nothing left to do.
	if cur.Cur >= cur.Max {
		return cur.Cur, nil
	}
	if err := s.setrlimit(syscall.Rlimit{Cur: cur.Max, Max: cur.Max}); err != nil {
		return 0, fmt.Errorf("raise RLIMIT_NOFILE to the hard limit %d: %w", cur.Max, err)
	}
	return cur.Max, nil
}

func (s system) set(want uint64) (uint64, error) {
	if want == 0 {
		cur, err := s.current()
		if err != nil {
			return 0, err
		}
		return cur.Cur, nil
	}
	n, err := s.nrOpen()
	if err != nil {
		return 0, err
	}
	if want > n {
		return 0, fmt.Errorf("RLIMIT_NOFILE %d exceeds the kernel maximum %d (%s)", want, n, nrOpenPath)
	}
	if err := s.setrlimit(syscall.Rlimit{Cur: want, Max: want}); err != nil {
		return 0, fmt.Errorf("set RLIMIT_NOFILE to %d: %w", want, err)
	}
	return want, nil
}
