package inodestore

import (
	"container/list"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
)

// Key is a host object's identity as statx reports it.
type Key struct {
	Dev     uint64 // st_dev, as makedev(major, minor)
	Ino     uint64
	MountID uint64
}

// KeyOf returns the identity in a statx result that asked for STATX_MNT_ID.
func KeyOf(stx *unix.Statx_t) Key {
	return Key{
		Dev:     unix.Mkdev(stx.Dev_major, stx.Dev_minor),
		Ino:     stx.Ino,
		MountID: stx.Mnt_id,
	}
}

// FileHandle is a file handle from name_to_handle_at together with the mount
// it must be opened through.
type FileHandle struct {
	MountID uint64
	Type    int32
	Bytes   []byte
}

// mapKey is the handle's identity as a comparable value: two handles of the
// same mount, type and bytes name the same host object.
func (h *FileHandle) mapKey() string {
	b := make([]byte, 12, 12+len(h.Bytes))
	binary.LittleEndian.PutUint64(b, h.MountID)
	binary.LittleEndian.PutUint32(b[8:], uint32(h.Type))
	return string(append(b, h.Bytes...))
}

// Inode is a host object the guest knows under a node id.
//
// ID, Key, Mode and Handle never change once the inode is in the store.
type Inode struct {
	ID fuseproto.NodeID
	// Key is the identity the object had when it was looked up.
	Key Key
	// Mode holds the S_IFMT bits of the object: its type cannot change.
	Mode uint32
	// Handle is set when the inode is referenced by file handle.
	Handle *FileHandle
	// handleKey is Handle.mapKey(), kept for removing the inode from the
	// table.
	handleKey string

	// fd is the O_PATH descriptor, or -1 for an inode referenced by handle
	// only.
	fd int
	// fdBudgeted says fd was counted in the store's FDBudget.
	fdBudgeted bool

	// cacheMu guards cachedFD: requests using it hold it for reading.
	cacheMu sync.RWMutex
	// cachedFD is an O_PATH descriptor kept by the descriptor cache for a
	// handle-referenced inode, or -1 (see DefaultFDCacheSize).
	cachedFD int
	// cacheElem is the inode's place in the cache. Protected by
	// fdCache.mu.
	cacheElem *list.Element

	// lost is set on an inode a migration could not find again (see
	// RestoredInode.Lost): it has no host reference, is not in the
	// identity maps, and every use of its host object fails with lost.
	lost unix.Errno

	// lookups is the kernel's lookup count. Protected by Store.mu.
	lookups uint64
	// refs counts the store's own reference (while lookups > 0) plus one per
	// Get that has not been Put yet. The host reference is closed at zero.
	refs atomic.Int64
}

// Lost returns the errno a lost inode answers with, 0 for a usable one.
func (i *Inode) Lost() unix.Errno { return i.lost }

// IsDir reports whether the inode is a directory.
func (i *Inode) IsDir() bool { return i.Mode&unix.S_IFMT == unix.S_IFDIR }

// IsRegular reports whether the inode is a regular file.
func (i *Inode) IsRegular() bool { return i.Mode&unix.S_IFMT == unix.S_IFREG }

// IsSymlink reports whether the inode is a symbolic link.
func (i *Inode) IsSymlink() bool { return i.Mode&unix.S_IFMT == unix.S_IFLNK }

// Lookups returns the lookup count. It is a snapshot for diagnostics.
func (i *Inode) lookupsLocked() uint64 { return i.lookups }
