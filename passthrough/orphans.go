package passthrough

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// OrphanDir is the hidden directory, directly in the shared directory, that
// keeps the files the guest removed while it held them open.
//
// A file the guest unlinks (or renames another file over) while it holds it
// open lives on in the guest: reads and writes through the open descriptor
// carry on. On the host the file would lose its last name, and with it any
// way for a migration destination to find it: a path leads nowhere, and a
// file handle only opens an object that is still linked (and on the same
// host). So before such a file loses its last name it is linked into
// OrphanDir, under a name unique to this daemon, and removed from there
// when the guest closes its last handle of it. The guest never sees
// OrphanDir: LOOKUP and READDIR of the shared directory leave it out, and it
// cannot be created, removed or renamed through the guest. The guest is
// told the file has no links (nlink 0), as it would be told of an unlinked
// file on its own disk. An O_TMPFILE file is an orphan from its creation.
//
// The trade-off: host users see OrphanDir and the space its files take (the
// same space unlinked-but-open files take anyway), and a daemon that dies
// leaves its orphans behind for an operator to remove. A daemon that exits
// or sees the guest unmount removes its orphans, except after it handed its
// state to a migration destination, which holds them now.
const OrphanDir = ".ferryfs-orphans"

// hiddenName reports whether name in directory parent is OrphanDir, which
// the guest never sees.
func hiddenName(parent fuseproto.NodeID, name string) bool {
	return parent == fuseproto.RootID && name == OrphanDir
}

// newNameErrno checks a name a request creates in parent.
func newNameErrno(parent fuseproto.NodeID, name string) syscall.Errno {
	switch {
	case !validName(name):
		return syscall.EINVAL
	case hiddenName(parent, name):
		return syscall.EPERM
	}
	return 0
}

// oldNameErrno checks the name of an existing entry a request removes or
// renames in parent.
func oldNameErrno(parent fuseproto.NodeID, name string) syscall.Errno {
	switch {
	case !validName(name):
		return syscall.EINVAL
	case hiddenName(parent, name):
		return syscall.ENOENT
	}
	return 0
}

// orphanage tracks the files this daemon keeps in OrphanDir, by the
// identity of the object.
type orphanage struct {
	// mu serializes making, adopting and removing orphans with the check
	// of whether the guest still holds them open.
	mu sync.Mutex
	// dirFD is an O_PATH descriptor of OrphanDir, -1 until first needed.
	dirFD int
	// names maps each orphan to its name in OrphanDir.
	names map[inodestore.Key]string
	// count is len(names), for the paths that only need to know whether
	// there are any without taking mu.
	count atomic.Int64
	// prefix makes this daemon's names unique among the daemons sharing
	// the directory (a migration's source and destination, for one).
	prefix string
	seq    uint64
	// keep is set once the state went to a migration destination, which
	// may hold the orphans now: an unmount or exit no longer removes them.
	keep atomic.Bool
}

func newOrphanage() (*orphanage, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("orphan name prefix: %w", err)
	}
	return &orphanage{dirFD: -1, names: make(map[inodestore.Key]string), prefix: hex.EncodeToString(b[:])}, nil
}

// orphanName returns the orphan name of the object with identity key, ""
// for one that is not an orphan.
func (fs *FS) orphanName(key inodestore.Key) string {
	o := fs.orphans
	if o.count.Load() == 0 {
		return ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.names[key]
}

// guestNlink is the link count the guest is told for an object with
// nlink host links: an orphan's name in OrphanDir is not one of them.
func (fs *FS) guestNlink(key inodestore.Key, nlink uint32) uint32 {
	if nlink > 0 && fs.orphanName(key) != "" {
		return nlink - 1
	}
	return nlink
}

// orphanDirLocked returns OrphanDir's descriptor, making the directory if
// need be. Called with o.mu held.
func (fs *FS) orphanDirLocked() (int, error) {
	o := fs.orphans
	if o.dirFD >= 0 {
		return o.dirFD, nil
	}
	root, err := fs.store.PathFD(fs.store.Root())
	if err != nil {
		return -1, err
	}
	defer root.Close()
	// Only the daemon's user may look in: the files are the guest's.
	if err := rawsys.Mkdirat(root.FD, OrphanDir, 0o700); err != nil && err != unix.EEXIST {
		return -1, fmt.Errorf("mkdir %s: %w", OrphanDir, err)
	}
	// Beneath, without following links: a symlink a host user put there
	// must not lead our files elsewhere.
	fd, err := openBeneath(root.FD, OrphanDir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", OrphanDir, err)
	}
	o.dirFD = fd
	return fd, nil
}

// adoptLocked links the object open at fd (any descriptor of it) into
// OrphanDir and records it as an orphan. Called with o.mu held.
func (fs *FS) adoptLocked(key inodestore.Key, fd int) (string, error) {
	o := fs.orphans
	dir, err := fs.orphanDirLocked()
	if err != nil {
		return "", err
	}
	o.seq++
	name := o.prefix + "-" + strconv.FormatUint(o.seq, 10)
	// Through the magic link, as LINK does: linkat(AT_EMPTY_PATH) would
	// need CAP_DAC_READ_SEARCH.
	if err := rawsys.Linkat(fs.procFD, strconv.Itoa(fd), dir, name, unix.AT_SYMLINK_FOLLOW); err != nil {
		return "", fmt.Errorf("link into %s: %w", OrphanDir, err)
	}
	o.names[key] = name
	o.count.Store(int64(len(o.names)))
	return name, nil
}

// dropLocked forgets the orphan key and removes its name. Called with o.mu
// held.
func (fs *FS) dropLocked(key inodestore.Key) {
	o := fs.orphans
	name, ok := o.names[key]
	if !ok {
		return
	}
	delete(o.names, key)
	o.count.Store(int64(len(o.names)))
	if err := rawsys.Unlinkat(o.dirFD, name, 0); err != nil && err != unix.ENOENT {
		fs.log.Warn("cannot remove an orphan", "name", OrphanDir+"/"+name, "err", err)
	}
}

// removeKeepingOpen runs remove, which takes the entry name away from the
// directory open at dirFD (UNLINK, or a RENAME over it). When that entry is
// the last name of a regular file the guest holds open, the file is made an
// orphan first, so it keeps a name until the guest closes it. Linking it
// before the removal keeps the removal itself one atomic step for anyone
// watching on the host.
func (fs *FS) removeKeepingOpen(dirFD int, name string, remove func() error) error {
	if fs.store.HandleCount() == 0 {
		return remove()
	}
	// One statx by name first: most removals are of files nobody holds
	// open, and they need no descriptor. name is one checked component,
	// and its last (only) component is not followed.
	var stx unix.Statx_t
	if err := rawsys.Statx(dirFD, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT, inodestore.StatxMask, &stx); err != nil ||
		stx.Mode&unix.S_IFMT != unix.S_IFREG || stx.Nlink != 1 || !fs.store.IsOpen(inodestore.KeyOf(&stx)) {
		return remove()
	}
	fd, err := openBeneath(dirFD, name, unix.O_PATH, 0)
	if err != nil {
		return remove() // gone or unreachable: remove says which
	}
	defer rawsys.Close(fd)
	if err := statxFD(fd, &stx); err != nil || stx.Mode&unix.S_IFMT != unix.S_IFREG || stx.Nlink != 1 {
		return remove() // replaced or linked since
	}
	key := inodestore.KeyOf(&stx)
	o := fs.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	if !fs.store.IsOpen(key) || o.names[key] != "" {
		return remove()
	}
	if _, err := fs.adoptLocked(key, fd); err != nil {
		// On another file system (a submount), say: the guest keeps
		// the file, only a migration cannot take it along.
		fs.log.Info("an unlinked file the guest holds open cannot be kept for migration", "name", name, "err", err)
		return remove()
	}
	if err := remove(); err != nil {
		fs.dropLocked(key)
		return err
	}
	return nil
}

// released is told that the guest closed a handle of the object key: the
// last close of an orphan removes it.
func (fs *FS) released(key inodestore.Key) {
	o := fs.orphans
	if o.count.Load() == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.names[key] != "" && !fs.store.IsOpen(key) {
		fs.dropLocked(key)
	}
}

// linked is told that the object key got a new name in the shared
// directory (LINK): an orphan given a name again is no longer one.
func (fs *FS) linked(key inodestore.Key) {
	o := fs.orphans
	if o.count.Load() == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	fs.dropLocked(key)
}

// restoreOrphan records, on a migration destination, the orphan a source
// kept as rel (OrphanDir/name) for the object key.
func (fs *FS) restoreOrphan(key inodestore.Key, rel string) error {
	name, ok := strings.CutPrefix(rel, OrphanDir+"/")
	if !ok || !validName(name) {
		return fmt.Errorf("unlinked file named %q, not a name in %s", rel, OrphanDir)
	}
	o := fs.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := fs.orphanDirLocked(); err != nil {
		return err
	}
	o.names[key] = name
	o.count.Store(int64(len(o.names)))
	return nil
}

// KeepOrphans tells the file system that its state went to a migration
// destination: from now on, only the guest closing an orphan removes it,
// not an unmount or the daemon's exit.
func (fs *FS) KeepOrphans() { fs.orphans.keep.Store(true) }

// dropAllOrphans removes every orphan, at unmount or exit, unless a
// migration destination may hold them.
func (fs *FS) dropAllOrphans() {
	o := fs.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.keep.Load() {
		clear(o.names)
		o.count.Store(0)
		return
	}
	for key := range o.names {
		fs.dropLocked(key)
	}
}

// adoptTmpfile makes the new O_TMPFILE file of handle fh on node an orphan:
// it has no name from the start, and a migration needs one to find it.
func (fs *FS) adoptTmpfile(node fuseproto.NodeID, fh uint64) {
	h, err := fs.store.GetHandle(fh, node)
	if err != nil {
		return // released already
	}
	defer fs.store.PutHandle(h)
	o := fs.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := fs.adoptLocked(h.Inode.Key, h.FD); err != nil {
		fs.log.Info("an O_TMPFILE file cannot be kept for migration", "err", err)
	}
}
