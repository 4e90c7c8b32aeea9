package inodestore

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// Options configures a Store.
type Options struct {
	// FileHandles chooses how inodes reference host objects.
	FileHandles FileHandleMode
	// Budget limits the descriptors held for the guest; nil means no limit.
	Budget *FDBudget
	// ProcSelfFD is a descriptor of /proc/self/fd opened at start-up. It is
	// used to re-open O_PATH descriptors with real open flags; the store does
	// not close it.
	ProcSelfFD int
	// FDCacheSize is how many descriptors of handle-referenced inodes to
	// keep open; 0 means DefaultFDCacheSize, negative means none.
	FDCacheSize int
	// Logger receives warnings; nil means slog.Default().
	Logger *slog.Logger
}

// MaxID is the largest node or handle id a store gives out; then it
// refuses new inodes and handles with ENFILE. Ids never wrap round, so
// none is given out twice, and a migration state cannot set a counter
// past it (migrate.MaxNextID).
const MaxID = 1<<63 - 1

// Store is the inode and open-handle table. It is safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger
	root *Inode

	mu       sync.RWMutex
	nodes    map[fuseproto.NodeID]*Inode // protected by mu
	byKey    map[Key]*Inode              // descriptor-referenced inodes; protected by mu
	byHandle map[string]*Inode           // handle-referenced inodes; protected by mu
	nextID   fuseproto.NodeID            // protected by mu

	mountsMu sync.Mutex
	mounts   map[uint64]int // mount id -> descriptor on that mount; protected by mountsMu

	fdCache fdCache

	handlesMu  sync.RWMutex
	handles    map[uint64]*Handle // protected by handlesMu
	nextHandle uint64             // protected by handlesMu
	// open counts the handles per object, for IsOpen. Protected by
	// handlesMu.
	open map[Key]int
}

// New returns a store whose root inode is the directory open at rootFD (an
// O_PATH descriptor). The store owns rootFD from then on.
//
// With FileHandlesPrefer, New falls back to descriptors when this process may
// not open file handles (open_by_handle_at needs CAP_DAC_READ_SEARCH) or when
// the shared directory's filesystem has none; FileHandlesMandatory turns both
// into an error.
func New(rootFD int, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	var stx unix.Statx_t
	if err := statxFD(rootFD, &stx); err != nil {
		return nil, fmt.Errorf("statx shared directory: %w", err)
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("shared directory is not a directory")
	}
	s := &Store{
		opts:     opts,
		log:      log,
		nodes:    make(map[fuseproto.NodeID]*Inode),
		byKey:    make(map[Key]*Inode),
		byHandle: make(map[string]*Inode),
		nextID:   fuseproto.RootID + 1,
		mounts:   make(map[uint64]int),
		handles:  make(map[uint64]*Handle),
		open:     make(map[Key]int),
	}
	switch {
	case opts.FDCacheSize == 0:
		s.fdCache.max = DefaultFDCacheSize
	case opts.FDCacheSize > 0:
		s.fdCache.max = opts.FDCacheSize
	}
	root := &Inode{ID: fuseproto.RootID, Key: KeyOf(&stx), Mode: uint32(stx.Mode) & unix.S_IFMT, fd: rootFD, cachedFD: -1, lookups: 1}
	root.refs.Store(1)
	if opts.FileHandles != FileHandlesNever {
		h, err := s.probeHandles(rootFD)
		switch {
		case err == nil:
			root.Handle = h
		case opts.FileHandles == FileHandlesMandatory:
			return nil, fmt.Errorf("--inode-file-handles=mandatory: %w", err)
		default:
			log.Warn("file handles unavailable, referencing inodes by O_PATH descriptors", "err", err)
			s.opts.FileHandles = FileHandlesNever
		}
	}
	s.root = root
	s.nodes[root.ID] = root
	if root.Handle != nil {
		root.handleKey = root.Handle.mapKey()
		s.byHandle[root.handleKey] = root
	} else {
		s.byKey[root.Key] = root
	}
	return s, nil
}

// probeHandles makes the shared directory's file handle and opens it again,
// which fails early when the filesystem has no handles or we lack the
// capability. The shared directory itself becomes the descriptor for its
// mount, so the mount works even where /proc/self/mountinfo does not show it.
func (s *Store) probeHandles(rootFD int) (*FileHandle, error) {
	h, err := nameToHandle(rootFD, 0)
	if err != nil {
		return nil, err
	}
	mfd, err := s.openMountFD(rootFD, unix.S_IFDIR)
	if err != nil {
		return nil, err
	}
	fd, err := rawsys.OpenByHandleAt(mfd, h.Type, h.Bytes, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		rawsys.Close(mfd)
		return nil, fmt.Errorf("open_by_handle_at: %w", err)
	}
	rawsys.Close(fd)
	s.mounts[h.MountID] = mfd
	return h, nil
}

// openMountFD opens the object at the O_PATH descriptor fd for reading, to
// serve as the descriptor of its mount: open_by_handle_at refuses O_PATH
// descriptors there. Any object on the mount will do, so the first one seen
// is used: this needs neither /proc/self/mountinfo nor a path, and works
// where the mount is not visible at the path we see (in a chroot). Only
// directories and regular files are opened; the first object seen on a new
// mount is normally that mount's root directory.
func (s *Store) openMountFD(fd int, mode uint32) (int, error) {
	if mode != unix.S_IFDIR && mode != unix.S_IFREG {
		return -1, fmt.Errorf("first object seen on a mount is not a directory or a file: %w", unix.EOPNOTSUPP)
	}
	mfd, err := rawsys.Openat(s.opts.ProcSelfFD, strconv.Itoa(fd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open mount descriptor: %w", err)
	}
	return mfd, nil
}

// FileHandles returns the mode in effect (after any fallback in New).
func (s *Store) FileHandles() FileHandleMode { return s.opts.FileHandles }

// Budget returns the descriptor budget.
func (s *Store) Budget() *FDBudget { return s.opts.Budget }

// Root returns the root inode, which is never freed. It needs no Put.
func (s *Store) Root() *Inode { return s.root }

// Get returns the inode with node id id and takes a reference on it that the
// caller must give back with Put. An unknown id gives EBADF, as virtiofsd
// answers a node id it never handed out.
func (s *Store) Get(id fuseproto.NodeID) (*Inode, error) {
	s.mu.RLock()
	i, ok := s.nodes[id]
	if ok {
		i.refs.Add(1)
	}
	s.mu.RUnlock()
	if !ok {
		return nil, unix.EBADF
	}
	return i, nil
}

// Put gives back a reference taken by Get or Insert.
func (s *Store) Put(i *Inode) {
	if i.refs.Add(-1) == 0 {
		s.release(i)
	}
}

// release closes the host reference of an inode nobody uses any more.
func (s *Store) release(i *Inode) {
	if i.Handle != nil {
		s.uncache(i)
	}
	if i.fd >= 0 {
		rawsys.Close(i.fd)
		i.fd = -1
		if i.fdBudgeted {
			s.opts.Budget.Release()
		}
	}
}

// Insert records one lookup of the host object open at fd, an O_PATH
// descriptor that Insert takes over (closing it when the object is already
// known or is referenced by handle). stx is that object's statx with
// STATX_MNT_ID. Insert returns the inode with its lookup count raised by one
// and a reference the caller must Put; ENFILE when a new inode is needed
// and every id up to MaxID was given out.
//
// A descriptor-referenced inode pins its host object, so its (dev, ino,
// mount) cannot be reused while it is in the table. A handle-referenced inode
// does not pin it; its identity is the handle, which the filesystem makes
// unique across reuse of the inode number (the generation is part of it).
func (s *Store) Insert(fd int, stx *unix.Statx_t) (*Inode, error) {
	key := KeyOf(stx)
	h, err := s.handleFor(fd, uint32(stx.Mode)&unix.S_IFMT)
	if err != nil {
		rawsys.Close(fd)
		return nil, err
	}
	var hkey string
	if h != nil {
		hkey = h.mapKey()
	}

	s.mu.Lock()
	var existing *Inode
	if h != nil {
		existing = s.byHandle[hkey]
	} else {
		existing = s.byKey[key]
	}
	if existing != nil {
		existing.lookups++
		existing.refs.Add(1)
		s.mu.Unlock()
		if !s.cacheFD(existing, fd) {
			rawsys.Close(fd)
		}
		return existing, nil
	}
	if s.nextID > MaxID {
		// Every id was given out: wrapping round would give the
		// root's, or another in use.
		s.mu.Unlock()
		rawsys.Close(fd)
		return nil, unix.ENFILE
	}
	i := &Inode{Key: key, Mode: uint32(stx.Mode) & unix.S_IFMT, Handle: h, handleKey: hkey, fd: -1, cachedFD: -1, lookups: 1}
	if h != nil {
		// Cached below, once i is in the table and referenced.
	} else {
		if !s.opts.Budget.Acquire() {
			s.mu.Unlock()
			rawsys.Close(fd)
			return nil, unix.EMFILE
		}
		i.fd, i.fdBudgeted = fd, s.opts.Budget != nil
	}
	i.ID = s.nextID
	s.nextID++
	i.refs.Store(2) // the table's and the caller's
	s.nodes[i.ID] = i
	if h != nil {
		s.byHandle[hkey] = i
	} else {
		s.byKey[key] = i
	}
	s.mu.Unlock()
	if h != nil && !s.cacheFD(i, fd) {
		rawsys.Close(fd)
	}
	return i, nil
}

// handleFor returns the file handle to reference the object open at fd
// (of type mode) by, with its mount ready for opening it: nil when inodes
// are referenced by descriptor, or, with prefer, when this object's file
// system has no handles. Only with mandatory is a failure an error.
func (s *Store) handleFor(fd int, mode uint32) (*FileHandle, error) {
	if s.opts.FileHandles == FileHandlesNever {
		return nil, nil
	}
	h, err := nameToHandle(fd, 0)
	if err == nil {
		err = s.ensureMount(h.MountID, fd, mode)
	}
	if err != nil {
		if s.opts.FileHandles == FileHandlesMandatory {
			return nil, err
		}
		return nil, nil // prefer: use the descriptor
	}
	return h, nil
}

// ensureMount keeps a descriptor for mount id so handles on it can be
// opened (see openMountFD).
func (s *Store) ensureMount(mountID uint64, fd int, mode uint32) error {
	s.mountsMu.Lock()
	defer s.mountsMu.Unlock()
	if _, ok := s.mounts[mountID]; ok {
		return nil
	}
	mfd, err := s.openMountFD(fd, mode)
	if err != nil {
		return fmt.Errorf("mount %d: %w", mountID, err)
	}
	s.mounts[mountID] = mfd
	return nil
}

func (s *Store) mountFD(mountID uint64) (int, bool) {
	s.mountsMu.Lock()
	fd, ok := s.mounts[mountID]
	s.mountsMu.Unlock()
	return fd, ok
}

// Forget drops n lookups from the inode id. At zero the inode leaves the
// table and its host reference is closed once no request uses it. The root
// is never forgotten; unknown ids are ignored (the kernel sends FORGET for
// nodes a DESTROY already dropped).
func (s *Store) Forget(id fuseproto.NodeID, n uint64) {
	if id == fuseproto.RootID {
		return
	}
	s.mu.Lock()
	i, ok := s.nodes[id]
	if !ok {
		s.mu.Unlock()
		return
	}
	gone := n >= i.lookups
	if gone {
		i.lookups = 0
		s.removeLocked(i)
	} else {
		i.lookups -= n
	}
	s.mu.Unlock()
	if gone {
		// Outside the lock: closing the last descriptor of a file unlinked
		// on the host is where the host file system frees it, which can
		// take a while, and every lookup waits for s.mu.
		s.Put(i)
	}
}

// removeLocked takes i out of the table. The caller drops the table's
// reference with Put once it has released s.mu.
func (s *Store) removeLocked(i *Inode) {
	delete(s.nodes, i.ID)
	if i.Handle != nil {
		if s.byHandle[i.handleKey] == i {
			delete(s.byHandle, i.handleKey)
		}
	} else if s.byKey[i.Key] == i {
		delete(s.byKey, i.Key)
	}
}

// Lookups returns the lookup count of id, and false for an unknown id.
func (s *Store) Lookups(id fuseproto.NodeID) (uint64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.nodes[id]
	if !ok {
		return 0, false
	}
	return i.lookupsLocked(), true
}

// Len returns the number of inodes in the table, the root included.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.nodes)
}

// PathFD is an O_PATH descriptor of an inode for the duration of one
// operation. Close it when done; it closes only what it opened.
type PathFD struct {
	FD    int
	owned bool
	// cached is set when FD is the inode's cached descriptor, which stays
	// open while the read lock is held.
	cached *sync.RWMutex
}

// Close releases the descriptor.
func (p PathFD) Close() {
	switch {
	case p.owned:
		rawsys.Close(p.FD)
	case p.cached != nil:
		p.cached.RUnlock()
	}
}

// PathFD returns an O_PATH descriptor of i: its own descriptor, its cached
// one, or one opened from its file handle (and offered to the cache).
// ESTALE means the object is gone; a lost inode gives its errno.
func (s *Store) PathFD(i *Inode) (PathFD, error) { return s.pathFD(i, true) }

// PathFDUncached is PathFD for a caller that visits every inode once (a
// migration describing them all): a descriptor it opens from the file
// handle is not offered to the cache, where it would evict the inodes the
// guest is using for ones it is not.
func (s *Store) PathFDUncached(i *Inode) (PathFD, error) { return s.pathFD(i, false) }

func (s *Store) pathFD(i *Inode, cache bool) (PathFD, error) {
	if i.lost != 0 {
		return PathFD{FD: -1}, i.lost
	}
	if i.fd >= 0 {
		return PathFD{FD: i.fd}, nil
	}
	for attempt := 0; ; attempt++ {
		i.cacheMu.RLock()
		if i.cachedFD >= 0 {
			return PathFD{FD: i.cachedFD, cached: &i.cacheMu}, nil
		}
		i.cacheMu.RUnlock()
		fd, err := s.openHandle(i, unix.O_PATH)
		if err != nil {
			return PathFD{FD: -1}, err
		}
		// Evicted between caching and the read lock: at most once more.
		if !cache || attempt > 0 || !s.cacheFD(i, fd) {
			return PathFD{FD: fd, owned: true}, nil
		}
	}
}

// Open opens i's host object with flags and returns a descriptor the caller
// owns. Only regular files and directories are opened: opening a device
// node or a FIFO would reach a host device or block the daemon, so those get
// EBADF, as in virtiofsd (a well-behaved kernel never asks: it serves special
// files itself). A lost inode gives its errno.
func (s *Store) Open(i *Inode, flags int) (int, error) {
	if i.lost != 0 {
		return -1, i.lost
	}
	if !i.IsRegular() && !i.IsDir() {
		return -1, unix.EBADF
	}
	flags |= unix.O_CLOEXEC
	flags &^= unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_PATH
	if i.fd >= 0 {
		return openProcFD(s.opts.ProcSelfFD, i.fd, flags)
	}
	if fd, ok, err := s.reopenCached(i, flags); ok {
		return fd, err
	}
	return s.openHandle(i, flags)
}

func (s *Store) openHandle(i *Inode, flags int) (int, error) {
	if i.Handle == nil {
		return -1, unix.EBADF
	}
	mfd, ok := s.mountFD(i.Handle.MountID)
	if !ok {
		return -1, fmt.Errorf("no descriptor for mount %d: %w", i.Handle.MountID, unix.ESTALE)
	}
	fd, err := rawsys.OpenByHandleAt(mfd, i.Handle.Type, i.Handle.Bytes, flags|unix.O_CLOEXEC)
	if err != nil {
		return -1, err
	}
	return fd, nil
}

// Reset forgets every inode but the root and closes every open handle, as
// FUSE_DESTROY and a new INIT require.
func (s *Store) Reset() {
	s.handlesMu.Lock()
	hs := s.handles
	s.handles = make(map[uint64]*Handle)
	clear(s.open)
	s.handlesMu.Unlock()
	for _, h := range hs {
		s.PutHandle(h)
	}
	s.mu.Lock()
	var gone []*Inode
	for _, i := range s.nodes {
		if i != s.root {
			i.lookups = 0
			s.removeLocked(i)
			gone = append(gone, i)
		}
	}
	s.mu.Unlock()
	for _, i := range gone {
		s.Put(i)
	}
}

// Close releases everything, the root and the mount descriptors included.
func (s *Store) Close() {
	s.Reset()
	s.mountsMu.Lock()
	for id, fd := range s.mounts {
		rawsys.Close(fd)
		delete(s.mounts, id)
	}
	s.mountsMu.Unlock()
	s.Put(s.root)
}

// nameToHandle returns the file handle of the object open at fd; flags
// are name_to_handle_at's beyond AT_EMPTY_PATH.
func nameToHandle(fd int, flags int) (*FileHandle, error) {
	typ, h, mountID, err := rawsys.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH|flags)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return nil, fmt.Errorf("name_to_handle_at: filesystem has no file handles: %w", err)
		}
		return nil, fmt.Errorf("name_to_handle_at: %w", err)
	}
	return &FileHandle{MountID: uint64(mountID), Type: typ, Bytes: h}, nil
}

// StatxMask is what the store needs from statx, on top of the basic fields.
const StatxMask = unix.STATX_BASIC_STATS | unix.STATX_MNT_ID

func statxFD(fd int, stx *unix.Statx_t) error {
	return rawsys.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT, StatxMask, stx)
}
