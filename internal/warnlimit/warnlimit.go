// Package warnlimit rate-limits warnings caused by an untrusted peer, so
// that a guest or a front-end cannot flood the host's logs.
package warnlimit

import (
	"sync"
	"time"
)

// Burst is how many warnings a Limiter lets through per second.
const Burst = 20

// Limiter lets Burst warnings through per second and counts the rest. The
// zero value is ready to use and safe for concurrent use.
type Limiter struct {
	mu         sync.Mutex
	window     time.Time
	count      int
	suppressed int
}

// Allow reports whether a warning may be logged now, and how many were
// suppressed since the last one that was.
func (l *Limiter) Allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Second {
		l.window = now
		l.count = 0
	}
	if l.count >= Burst {
		l.suppressed++
		return false, 0
	}
	l.count++
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
