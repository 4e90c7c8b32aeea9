package inodestore

import (
	"container/list"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// DefaultFDCacheSize is how many O_PATH descriptors of handle-referenced
// inodes are kept open by default.
//
// An inode referenced by file handle holds no descriptor, so every operation
// on it first re-opens it with open_by_handle_at: about a microsecond each
// time, and an open that comes right after a LOOKUP reaches whatever the
// handle names by then — nothing, if the file was replaced meanwhile, where
// a descriptor would still reach the file that was looked up. The cache
// keeps the descriptors of the inodes most recently looked up, so hot
// inodes are as fast as with descriptors and a lookup-then-open behaves as
// it does with descriptors, while the number of objects pinned (kept alive
// after an unlink, kept from being unmounted) stays bounded, which is what
// file handles are for.
const DefaultFDCacheSize = 4096

// fdCache is the FIFO of inodes whose cachedFD is set, oldest at the back.
//
// Lock order: fdCache.mu before Inode.cacheMu. Requests reading cachedFD
// hold Inode.cacheMu for reading; whoever closes a cached descriptor holds
// it for writing, and eviction only TryLocks it, so it never waits for a
// request.
type fdCache struct {
	mu   sync.Mutex
	max  int
	fifo list.List // of *Inode; protected by mu
}

// cacheFD offers fd, an O_PATH descriptor of handle-referenced inode i, to
// the cache. It reports whether the cache took it; if not, the descriptor
// is still the caller's.
func (s *Store) cacheFD(i *Inode, fd int) bool {
	c := &s.fdCache
	if c.max <= 0 || i.Handle == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if i.cacheElem != nil {
		return false // already cached (by a racing request)
	}
	if c.fifo.Len() >= c.max && !s.evictLocked() {
		return false
	}
	if !s.opts.Budget.Acquire() && !(s.evictLocked() && s.opts.Budget.Acquire()) {
		return false
	}
	i.cacheMu.Lock()
	i.cachedFD = fd
	i.cacheMu.Unlock()
	i.cacheElem = c.fifo.PushFront(i)
	return true
}

// evictLocked closes the oldest cached descriptor that no request is using
// right now. It looks at a few candidates only, so a cache full of busy
// inodes costs little.
func (s *Store) evictLocked() bool {
	c := &s.fdCache
	e := c.fifo.Back()
	for tries := 0; e != nil && tries < 8; tries++ {
		i := e.Value.(*Inode)
		if i.cacheMu.TryLock() {
			fd := i.cachedFD
			i.cachedFD = -1
			i.cacheMu.Unlock()
			rawsys.Close(fd)
			s.opts.Budget.Release()
			c.fifo.Remove(e)
			i.cacheElem = nil
			return true
		}
		e = e.Prev()
	}
	return false
}

// uncache closes i's cached descriptor, if any; i is being released.
func (s *Store) uncache(i *Inode) {
	c := &s.fdCache
	c.mu.Lock()
	if i.cacheElem != nil {
		c.fifo.Remove(i.cacheElem)
		i.cacheElem = nil
	}
	c.mu.Unlock()
	i.cacheMu.Lock()
	fd := i.cachedFD
	i.cachedFD = -1
	i.cacheMu.Unlock()
	if fd >= 0 {
		rawsys.Close(fd)
		s.opts.Budget.Release()
	}
}

// CachedFDs returns how many descriptors the cache holds.
func (s *Store) CachedFDs() int {
	s.fdCache.mu.Lock()
	defer s.fdCache.mu.Unlock()
	return s.fdCache.fifo.Len()
}

// reopenCached opens i through its cached descriptor with flags, and
// reports false when it has none.
func (s *Store) reopenCached(i *Inode, flags int) (int, bool, error) {
	i.cacheMu.RLock()
	defer i.cacheMu.RUnlock()
	if i.cachedFD < 0 {
		return -1, false, nil
	}
	fd, err := openProcFD(s.opts.ProcSelfFD, i.cachedFD, flags)
	return fd, true, err
}

// openProcFD re-opens the object that fd refers to, through /proc/self/fd:
// the very object, whatever has been renamed since, without resolving any
// path under the shared directory.
func openProcFD(procFD, fd, flags int) (int, error) {
	for {
		nfd, err := rawsys.Openat(procFD, strconv.Itoa(fd), flags, 0)
		if err != unix.EINTR {
			return nfd, err
		}
	}
}
