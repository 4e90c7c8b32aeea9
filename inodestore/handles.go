package inodestore

import (
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// Handle is a file or directory the guest holds open.
type Handle struct {
	ID    uint64
	Inode *Inode
	// FD is the open descriptor.
	FD int
	// Flags are the open flags as the descriptor was opened (after any
	// adjustment such as --writeback's O_WRONLY to O_RDWR).
	Flags int
	// GuestFlags are the open flags the guest asked for.
	GuestFlags uint32
	// Mu serializes the users of the descriptor's file position: directory
	// streams seek and read under it.
	Mu sync.Mutex

	// lost is set on a handle a migration could not re-open (see
	// RestoredHandle.Lost): FD is -1 and GetHandle answers with lost.
	lost unix.Errno
	refs atomic.Int64
}

// ReserveFD takes one descriptor from the guest budget before the caller
// opens a file for a new handle: EMFILE when the budget is spent. Give it back
// with UnreserveFD if the open fails; AddHandle takes it over otherwise.
func (s *Store) ReserveFD() error {
	if !s.opts.Budget.Acquire() {
		return unix.EMFILE
	}
	return nil
}

// UnreserveFD gives back a reservation that AddHandle did not take.
func (s *Store) UnreserveFD() { s.opts.Budget.Release() }

// AddHandle records fd, opened on i after ReserveFD, as a new handle and
// returns its id. The handle holds a reference on i until it is removed.
// When every id up to MaxID was given out it fails with ENFILE, and fd and
// the reservation stay the caller's.
func (s *Store) AddHandle(i *Inode, fd int, flags int, guestFlags uint32) (uint64, error) {
	h := &Handle{Inode: i, FD: fd, Flags: flags, GuestFlags: guestFlags}
	h.refs.Store(1)
	s.handlesMu.Lock()
	if s.nextHandle >= MaxID {
		// Wrapping round would reuse the ids of open handles.
		s.handlesMu.Unlock()
		return 0, unix.ENFILE
	}
	i.refs.Add(1)
	s.nextHandle++
	h.ID = s.nextHandle
	s.handles[h.ID] = h
	s.open[i.Key]++
	s.handlesMu.Unlock()
	return h.ID, nil
}

// GetHandle returns handle id, which must belong to node, with a reference
// the caller gives back with PutHandle. Anything else gives EBADF; a lost
// handle gives its errno.
func (s *Store) GetHandle(id uint64, node fuseproto.NodeID) (*Handle, error) {
	s.handlesMu.RLock()
	defer s.handlesMu.RUnlock()
	switch h, ok := s.handles[id]; {
	case !ok || h.Inode.ID != node:
		return nil, unix.EBADF
	case h.lost != 0:
		return nil, h.lost
	default:
		h.refs.Add(1)
		return h, nil
	}
}

// PutHandle gives back a reference from GetHandle.
func (s *Store) PutHandle(h *Handle) {
	if h.refs.Add(-1) == 0 {
		if h.lost == 0 { // a lost handle has neither descriptor nor budget
			rawsys.Close(h.FD)
			s.opts.Budget.Release()
		}
		s.Put(h.Inode)
	}
}

// RemoveHandle takes handle id of node out of the table; its descriptor is
// closed once no request uses it. It returns the identity of the handle's
// object, for IsOpen.
func (s *Store) RemoveHandle(id uint64, node fuseproto.NodeID) (Key, error) {
	s.handlesMu.Lock()
	h, ok := s.handles[id]
	if ok && h.Inode.ID == node {
		delete(s.handles, id)
		if h.lost == 0 {
			s.closedLocked(h.Inode.Key)
		}
	} else {
		ok = false
	}
	s.handlesMu.Unlock()
	if !ok {
		return Key{}, unix.EBADF
	}
	key := h.Inode.Key
	s.PutHandle(h)
	return key, nil
}

// closedLocked counts one handle of the object key less.
func (s *Store) closedLocked(key Key) {
	if s.open[key]--; s.open[key] <= 0 {
		delete(s.open, key)
	}
}

// IsOpen reports whether the guest holds a handle open on the object with
// identity key (as KeyOf gives it). The answer may change as soon as it is
// given: a caller that acts on it serializes with the RELEASE that would
// change it.
func (s *Store) IsOpen(key Key) bool {
	s.handlesMu.RLock()
	defer s.handlesMu.RUnlock()
	return s.open[key] > 0
}

// HandleCount returns the number of open handles.
func (s *Store) HandleCount() int {
	s.handlesMu.RLock()
	defer s.handlesMu.RUnlock()
	return len(s.handles)
}
