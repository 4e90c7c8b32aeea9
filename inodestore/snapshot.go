package inodestore

import (
	"cmp"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
)

// InodeEntry is one inode as Snapshot sees it. Inode holds a reference the
// caller gives back with Put (or with Snapshot.Release).
type InodeEntry struct {
	Inode   *Inode
	Lookups uint64
}

// HandleEntry is one open handle as Snapshot sees it.
type HandleEntry struct {
	ID         uint64
	Node       fuseproto.NodeID
	Flags      int
	GuestFlags uint32
	// Lost is the errno of a handle a migration could not re-open, 0 for
	// a usable one.
	Lost unix.Errno
}

// Snapshot is a consistent list of the store's inodes and handles, for
// migration: the tables as they were at one instant, sorted by id.
type Snapshot struct {
	Inodes     []InodeEntry
	Handles    []HandleEntry
	NextNode   fuseproto.NodeID
	NextHandle uint64 // the next handle id AddHandle will give
}

// Snapshot lists the inodes and handles. Every listed inode is referenced,
// so none is freed while the caller describes it; call Release when done.
// The caller must keep requests from changing the tables meanwhile if it
// needs the snapshot to stay current (a migration stops the rings first).
func (s *Store) Snapshot() *Snapshot {
	snap := &Snapshot{}
	s.mu.RLock()
	s.handlesMu.RLock()
	snap.Inodes = make([]InodeEntry, 0, len(s.nodes))
	for _, i := range s.nodes {
		i.refs.Add(1)
		snap.Inodes = append(snap.Inodes, InodeEntry{Inode: i, Lookups: i.lookups})
	}
	snap.NextNode = s.nextID
	snap.Handles = make([]HandleEntry, 0, len(s.handles))
	for _, h := range s.handles {
		snap.Handles = append(snap.Handles, HandleEntry{ID: h.ID, Node: h.Inode.ID, Flags: h.Flags, GuestFlags: h.GuestFlags, Lost: h.lost})
	}
	snap.NextHandle = s.nextHandle + 1
	s.handlesMu.RUnlock()
	s.mu.RUnlock()
	slices.SortFunc(snap.Inodes, func(a, b InodeEntry) int { return cmp.Compare(a.Inode.ID, b.Inode.ID) })
	slices.SortFunc(snap.Handles, func(a, b HandleEntry) int { return cmp.Compare(a.ID, b.ID) })
	return snap
}

// Release gives back the snapshot's inode references.
func (s *Store) Release(snap *Snapshot) {
	for _, e := range snap.Inodes {
		s.Put(e.Inode)
	}
	snap.Inodes = nil
}

// NameToHandle returns the file handle of the object open at fd (any kind
// of descriptor), for describing an inode referenced by descriptor in
// file-handles migration mode.
func NameToHandle(fd int) (*FileHandle, error) { return nameToHandle(fd, 0) }

// atHandleConnectable is AT_HANDLE_CONNECTABLE (Linux 6.13), which
// x/sys does not name yet.
const atHandleConnectable = 0x002

// NameToConnectableHandle returns a connectable file handle of the
// non-directory open at fd: one that carries its parent, so that
// open_by_handle_at places the object in its directory tree (and opens it
// only beneath the mount descriptor it is given). The kernel refuses it
// (EINVAL) before 6.13 and for an object whose parent it does not know.
func NameToConnectableHandle(fd int) (*FileHandle, error) {
	return nameToHandle(fd, atHandleConnectable)
}
