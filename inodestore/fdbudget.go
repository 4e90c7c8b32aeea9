package inodestore

import "sync/atomic"

// FDBudget counts the file descriptors held on the guest's behalf (inode
// references and open handles) against a maximum, so that a guest that opens
// everything runs into EMFILE while the daemon still has descriptors for its
// own work (vhost-user messages, temporary opens, logging).
type FDBudget struct {
	max  int64
	used atomic.Int64
}

// NewFDBudget returns a budget of max descriptors; max <= 0 means no limit.
func NewFDBudget(max int) *FDBudget { return &FDBudget{max: int64(max)} }

// Acquire takes one descriptor from the budget and reports whether it could.
func (b *FDBudget) Acquire() bool {
	if b == nil {
		return true
	}
	if n := b.used.Add(1); b.max > 0 && n > b.max {
		b.used.Add(-1)
		return false
	}
	return true
}

// Release gives back one descriptor taken with Acquire.
func (b *FDBudget) Release() {
	if b != nil {
		b.used.Add(-1)
	}
}

// Used returns how many descriptors are held now.
func (b *FDBudget) Used() int {
	if b == nil {
		return 0
	}
	return int(b.used.Load())
}

// Max returns the limit, 0 for none.
func (b *FDBudget) Max() int {
	if b == nil || b.max <= 0 {
		return 0
	}
	return int(b.max)
}
