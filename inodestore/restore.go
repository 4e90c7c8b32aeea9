package inodestore

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
)

// RestoredInode is an inode of a migration source, found again on this
// host.
type RestoredInode struct {
	ID      fuseproto.NodeID
	Lookups uint64
	// FD is an O_PATH descriptor of the object; Restore takes it over.
	FD int
}

// RestoredHandle is an open handle of a migration source, opened again on
// this host after ReserveFD, as for AddHandle.
type RestoredHandle struct {
	ID         uint64
	Node       fuseproto.NodeID
	FD         int // Restore takes it over
	Flags      int
	GuestFlags uint32
}

// Restore fills a store that knows only its root with the inodes and
// handles of a migration source, under the source's ids, and continues the
// id counters from nextNode and nextHandle so that no id the guest may
// still hold is given out again. An inode with the root's id sets the
// root's lookup count. Restore takes over every descriptor, even on error;
// on error the store is left as it was.
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
				unix.Close(in.FD)
			}
		}
		for _, h := range handles {
			unix.Close(h.FD)
			s.opts.Budget.Release() // reserved by the caller, as for AddHandle
		}
		return err
	}
	byID := make(map[fuseproto.NodeID]*Inode, len(inodes))
	for k, in := range inodes {
		if in.ID == fuseproto.RootID {
			rootLookups = in.Lookups
			if in.FD >= 0 {
				unix.Close(in.FD)
			}
			inodes[k].FD = -1
			continue
		}
		if in.ID == 0 || in.ID >= nextNode || byID[in.ID] != nil {
			return fail(fmt.Errorf("inode id %d duplicated or outside 2..%d", in.ID, nextNode-1))
		}
		i, err := s.restoredInode(in)
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
		h := &Handle{ID: rh.ID, Inode: i, FD: rh.FD, Flags: rh.Flags, GuestFlags: rh.GuestFlags}
		h.refs.Store(1)
		s.handles[h.ID] = h
	}
	s.nextHandle = max(s.nextHandle, nextHandle-1)
	s.handlesMu.Unlock()
	return nil
}

// restoredInode builds the inode for in, as Insert would for a lookup.
func (s *Store) restoredInode(in RestoredInode) (*Inode, error) {
	var stx unix.Statx_t
	if err := statxFD(in.FD, &stx); err != nil {
		unix.Close(in.FD)
		return nil, fmt.Errorf("statx: %w", err)
	}
	i := &Inode{ID: in.ID, Key: KeyOf(&stx), Mode: uint32(stx.Mode) & unix.S_IFMT, fd: -1, cachedFD: -1, lookups: in.Lookups}
	i.refs.Store(1) // the table's
	h, err := s.handleFor(in.FD, i.Mode)
	if err != nil {
		unix.Close(in.FD)
		return nil, err
	}
	if h != nil {
		i.Handle, i.handleKey = h, h.mapKey()
		if !s.cacheFD(i, in.FD) {
			unix.Close(in.FD)
		}
		return i, nil
	}
	if !s.opts.Budget.Acquire() {
		unix.Close(in.FD)
		return nil, unix.EMFILE
	}
	i.fd, i.fdBudgeted = in.FD, s.opts.Budget != nil
	return i, nil
}
