package inodestore

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// RestoredInode is an inode of a migration source, found again on this
// host, or lost.
type RestoredInode struct {
	ID      fuseproto.NodeID
	Lookups uint64
	// FD is an O_PATH descriptor of the object; Restore takes it over.
	// It is -1 for a lost inode, and for one described by Handle.
	FD int
	// Handle and Key describe an object found without keeping its
	// descriptor (see Unpin); Mode then holds its type.
	Handle *FileHandle
	Key    Key
	// Lost, when not 0, marks an inode that could not be found again
	// (--migration-on-error=guest-error). It keeps its node id and lookup
	// count, so the guest's FORGETs still balance, but refers to no host
	// object: every operation that needs one fails with Lost. It is not
	// found by identity, so a new lookup of the same name makes a new,
	// working inode.
	Lost unix.Errno
	// Mode is the S_IFMT bits the source knew, for a lost inode: there is
	// no object to ask; or the object's, with Handle. Ignored otherwise.
	Mode uint32
}

// RestoredHandle is an open handle of a migration source, opened again on
// this host after ReserveFD, as for AddHandle, or lost.
type RestoredHandle struct {
	ID         uint64
	Node       fuseproto.NodeID
	FD         int // Restore takes it over; -1 when lost
	Flags      int
	GuestFlags uint32
	// Lost, when not 0, marks a handle that could not be re-opened, for
	// which no descriptor was reserved: using it fails with Lost,
	// releasing it works. A handle on a lost inode must be lost.
	Lost unix.Errno
}

// Restore fills a store that knows only its root with the inodes and
// handles of a migration source, under the source's ids, and continues the
// id counters from nextNode and nextHandle (at most MaxID+1) so that no
// id the guest may still hold is given out again. An inode with the root's id sets the
// root's lookup count. Restore takes over every descriptor, even on error;
// on error the store is left as it was. Lost inodes and handles (see
// RestoredInode.Lost) are installed under their ids too.
//
// Two ids may name one host object (a file the source knew through two
// hard links it had not yet linked together); both stay usable, and a
// new lookup finds the first.
func (s *Store) Restore(inodes []RestoredInode, handles []RestoredHandle, nextNode fuseproto.NodeID, nextHandle uint64) error {
	built := make([]*Inode, 0, len(inodes))
	var rootLookups uint64
	fail := func(err error) error {
		for _, i := range built {
			i.refs.Store(1)
			s.release(i)
		}
		for _, in := range inodes {
			if in.FD >= 0 && in.ID != fuseproto.RootID {
				rawsys.Close(in.FD)
			}
		}
		for _, h := range handles {
			if h.Lost == 0 {
				rawsys.Close(h.FD)
				s.opts.Budget.Release() // reserved by the caller, as for AddHandle
			}
		}
		return err
	}
	if nextNode <= fuseproto.RootID || nextNode > MaxID+1 || nextHandle < 1 || nextHandle > MaxID+1 {
		return fail(fmt.Errorf("next ids %d (node) and %d (handle) outside 2..%d and 1..%d", nextNode, nextHandle, uint64(MaxID+1), uint64(MaxID+1)))
	}
	byID := make(map[fuseproto.NodeID]*Inode, len(inodes))
	for k, in := range inodes {
		if in.ID == fuseproto.RootID {
			if in.Lost != 0 {
				return fail(fmt.Errorf("the root cannot be lost: it is this store's own"))
			}
			rootLookups = in.Lookups
			if in.FD >= 0 {
				rawsys.Close(in.FD)
			}
			inodes[k].FD = -1
			continue
		}
		if in.ID == 0 || in.ID >= nextNode || byID[in.ID] != nil {
			return fail(fmt.Errorf("inode id %d duplicated or outside 2..%d", in.ID, nextNode-1))
		}
		var i *Inode
		var err error
		if in.Lost != 0 {
			i = lostInode(in)
			if in.FD >= 0 {
				rawsys.Close(in.FD)
			}
		} else {
			i, err = s.restoredInode(in)
		}
		inodes[k].FD = -1 // taken over by i, or closed
		if err != nil {
			return fail(fmt.Errorf("inode %d: %w", in.ID, err))
		}
		built = append(built, i)
		byID[i.ID] = i
	}
	for _, h := range handles {
		if h.Node != fuseproto.RootID && byID[h.Node] == nil {
			return fail(fmt.Errorf("handle %d: node %d was not restored", h.ID, h.Node))
		}
		if h.Lost == 0 && h.Node != fuseproto.RootID && byID[h.Node].lost != 0 {
			return fail(fmt.Errorf("handle %d is open on lost node %d: it must be lost too", h.ID, h.Node))
		}
		if h.ID == 0 || h.ID >= nextHandle {
			return fail(fmt.Errorf("handle id %d outside 1..%d", h.ID, nextHandle-1))
		}
	}

	s.mu.Lock()
	if len(s.nodes) != 1 {
		s.mu.Unlock()
		return fail(fmt.Errorf("the store already knows %d inodes: restore needs a fresh one", len(s.nodes)-1))
	}
	for _, i := range built {
		s.nodes[i.ID] = i
		if i.lost != 0 {
			// Not findable by identity: it has none, and a new lookup
			// of its name must reach the object there now.
			continue
		}
		if i.Handle != nil {
			if s.byHandle[i.handleKey] == nil {
				s.byHandle[i.handleKey] = i
			}
		} else if s.byKey[i.Key] == nil {
			s.byKey[i.Key] = i
		}
	}
	if rootLookups > 0 {
		s.root.lookups = rootLookups
	}
	s.nextID = max(nextNode, fuseproto.RootID+1)
	s.mu.Unlock()

	s.handlesMu.Lock()
	for _, rh := range handles {
		i := byID[rh.Node]
		if rh.Node == fuseproto.RootID {
			i = s.root
		}
		i.refs.Add(1)
		h := &Handle{ID: rh.ID, Inode: i, FD: rh.FD, Flags: rh.Flags, GuestFlags: rh.GuestFlags, lost: rh.Lost}
		if h.lost != 0 {
			h.FD = -1
		} else {
			s.open[i.Key]++
		}
		h.refs.Store(1)
		s.handles[h.ID] = h
	}
	s.nextHandle = max(s.nextHandle, nextHandle-1)
	s.handlesMu.Unlock()
	return nil
}

// lostInode builds the inode for in, which was not found again: no host
// reference, so releasing it closes nothing.
func lostInode(in RestoredInode) *Inode {
	i := &Inode{ID: in.ID, Mode: in.Mode & unix.S_IFMT, fd: -1, cachedFD: -1, lookups: in.Lookups, lost: in.Lost}
	i.refs.Store(1) // the table's
	return i
}

// Unpin prepares the object open at fd, whose statx is stx, for Restore
// without its descriptor, so that a destination restoring millions of
// inodes need not hold a descriptor for each until Restore: when this
// store references the object by file handle, Unpin closes fd and returns
// the RestoredInode fields that describe it (Handle, Key, Mode, FD -1).
// When the store would reference it by descriptor, it returns ok false and
// leaves fd alone.
func (s *Store) Unpin(fd int, stx *unix.Statx_t) (in RestoredInode, ok bool, err error) {
	mode := uint32(stx.Mode) & unix.S_IFMT
	h, err := s.handleFor(fd, mode)
	if err != nil || h == nil {
		return in, false, err
	}
	rawsys.Close(fd)
	return RestoredInode{FD: -1, Handle: h, Key: KeyOf(stx), Mode: mode}, true, nil
}

// restoredInode builds the inode for in, as Insert would for a lookup.
func (s *Store) restoredInode(in RestoredInode) (*Inode, error) {
	if in.FD < 0 && in.Handle != nil {
		i := &Inode{ID: in.ID, Key: in.Key, Mode: in.Mode & unix.S_IFMT, Handle: in.Handle, handleKey: in.Handle.mapKey(),
			fd: -1, cachedFD: -1, lookups: in.Lookups}
		i.refs.Store(1) // the table's
		return i, nil
	}
	var stx unix.Statx_t
	if err := statxFD(in.FD, &stx); err != nil {
		rawsys.Close(in.FD)
		return nil, fmt.Errorf("statx: %w", err)
	}
	i := &Inode{ID: in.ID, Key: KeyOf(&stx), Mode: uint32(stx.Mode) & unix.S_IFMT, fd: -1, cachedFD: -1, lookups: in.Lookups}
	i.refs.Store(1) // the table's
	h, err := s.handleFor(in.FD, i.Mode)
	if err != nil {
		rawsys.Close(in.FD)
		return nil, err
	}
	if h != nil {
		i.Handle, i.handleKey = h, h.mapKey()
		if !s.cacheFD(i, in.FD) {
			rawsys.Close(in.FD)
		}
		return i, nil
	}
	if !s.opts.Budget.Acquire() {
		rawsys.Close(in.FD)
		return nil, unix.EMFILE
	}
	i.fd, i.fdBudgeted = in.FD, s.opts.Budget != nil
	return i, nil
}
