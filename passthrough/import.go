package passthrough

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
	"github.com/ferryfs/ferryfs/migrate"
)

// ImportOptions are a migration destination's settings.
type ImportOptions struct {
	// OnError is what happens to inodes and handles that cannot be found
	// or re-opened (--migration-on-error); "" means migrate.Abort.
	OnError migrate.OnError
	// MaxWrite is the request layer's (fuseproto.ServerOptions.MaxWrite,
	// 0 for its default): a session that announced larger requests is
	// refused.
	MaxWrite uint32
}

// ImportReport is what ImportState restored.
type ImportReport struct {
	// Session is what INIT negotiated with the source, for the request
	// layer (fuseproto.Server.SetSession).
	Session fuseproto.Session
	// LostInodes and LostHandles count the inodes and handles installed
	// as lost (--migration-on-error=guest-error; always 0 with abort).
	LostInodes, LostHandles int
	// Lost says why, one error per lost inode, then per lost handle.
	Lost []error
	// LostAtSource counts the inodes and handles the source could not
	// reach either: inodes removed on the host that the guest only had
	// cached (migrate.Inode.Gone) and were not found here either, and
	// inodes and handles an earlier migration lost. They are installed as
	// lost whatever OnError says, and not counted in LostInodes or
	// LostHandles.
	LostAtSource int
}

// ImportState rebuilds, in a file system that has served nothing yet, what
// a migration source's guest knew: every inode under its node id with its
// lookup count, every open handle re-opened with its flags, the id
// counters, and the negotiated session, which it reports for the request
// layer. The state must have passed migrate.Unmarshal's validation.
//
// Options that change what the guest sees must be the same on both sides;
// a difference is an error before anything is applied.
//
// An inode that cannot be found, is found as another type of object or,
// when the source sent its file handle, as another object, or that the
// source marked invalid, is lost; so is every inode below a lost directory,
// every handle on a lost inode, and every handle that cannot be re-opened.
// With migrate.Abort anything lost is an error and nothing is applied,
// except what the source could not reach either: an inode it marked gone
// (removed on the host while the guest had it only cached), installed as
// lost with ESTALE, and inodes and handles an earlier migration lost,
// installed as lost with the errno they had there.
// With migrate.GuestError everything else is restored and each lost inode
// and handle is installed under its id, answering the guest with an errno:
// ESTALE for an object gone or replaced, EACCES or EPERM as the host
// refused, EIO when nothing better is known. The report counts them, and
// they are logged.
func (fs *FS) ImportState(st *migrate.State, opts ImportOptions) (ImportReport, error) {
	var rep ImportReport
	if d := st.Options.Diff(fs.MigrationOptions()); len(d) > 0 {
		return rep, fmt.Errorf("the destination's options differ from the source's: %s", strings.Join(d, "; "))
	}
	if st.Mounted() {
		s := st.Session
		sess := fuseproto.Session{Major: s.Major, Minor: s.Minor, Flags: s.Flags, MaxWrite: s.MaxWrite,
			MaxReadahead: s.MaxReadahead, MaxPages: s.MaxPages, TimeGran: s.TimeGran}
		if err := fuseproto.CheckSession(sess, fs, opts.MaxWrite); err != nil {
			return rep, fmt.Errorf("the source's FUSE session: %w", err)
		}
	}
	// Every handle's flags are checked before anything is opened: a
	// state is refused as a whole, naming the first bad handle.
	reopenFlags := make([]int, len(st.Handles))
	for k, h := range st.Handles {
		var err error
		if reopenFlags[k], err = fs.reopenFlags(h, st); err != nil {
			return rep, fmt.Errorf("handle %d on node %d: %w", h.ID, h.Node, err)
		}
	}
	var guestError bool
	switch opts.OnError {
	case "", migrate.Abort:
	case migrate.GuestError:
		guestError = true
	default:
		return rep, fmt.Errorf("unknown --migration-on-error %q", opts.OnError)
	}
	rootPFD, err := fs.store.PathFD(fs.store.Root())
	if err != nil {
		return rep, fmt.Errorf("shared directory: %w", err)
	}
	defer rootPFD.Close()

	im := &importer{
		fs:       fs,
		st:       st,
		byID:     make(map[uint64]*migrate.Inode, len(st.Inodes)),
		fds:      map[uint64]int{migrate.RootID: rootPFD.FD},
		unpinned: make(map[uint64]inodestore.RestoredInode),
		keep:     make(map[uint64]bool),
		lost:     map[uint64]*lostError{},
		mountFD:  -1,
	}
	for k := range st.Inodes {
		i := &st.Inodes[k]
		im.byID[i.ID] = i
		if st.Mode == migrate.FindPaths && i.Type == unix.S_IFDIR {
			im.keep[i.ID] = true // a parent to resolve names in
		}
	}
	for _, h := range st.Handles {
		im.keep[h.Node] = true // to re-open the handle through
	}
	if st.Mode == migrate.FileHandles {
		// open_by_handle_at wants a real descriptor on the mount.
		im.mountFD, err = rawsys.Openat(fs.procFD, strconv.Itoa(rootPFD.FD), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return rep, fmt.Errorf("open the shared directory's mount: %w", err)
		}
		defer rawsys.Close(im.mountFD)
	}

	im.findAll()
	var inodeErrs, atSourceErrs []error
	if len(im.lost) > 0 {
		var paths map[uint64]string
		if st.Mode == migrate.FindPaths {
			paths = st.Paths() // for the messages only
		}
		for k := range st.Inodes {
			i := &st.Inodes[k]
			le := im.lost[i.ID]
			switch {
			case le == nil:
			case i.LostAtSource():
				atSourceErrs = append(atSourceErrs, fmt.Errorf("inode %d: %w", i.ID, le))
			default:
				inodeErrs = append(inodeErrs, fmt.Errorf("inode %d (%s): %w", i.ID, migrate.Describe(i, paths), le))
			}
		}
	}
	if len(inodeErrs) > 0 && !guestError {
		im.closeAll()
		return rep, fmt.Errorf("%d of %d inodes not found: %w", len(inodeErrs), len(st.Inodes), errors.Join(inodeErrs...))
	}

	handles := make([]inodestore.RestoredHandle, 0, len(st.Handles))
	var handleErrs []error
	for k, h := range st.Handles {
		rh := inodestore.RestoredHandle{ID: h.ID, Node: fuseproto.NodeID(h.Node), FD: -1, Flags: reopenFlags[k], GuestFlags: h.GuestFlags}
		if h.Lost != 0 {
			rh.Lost = syscall.Errno(h.Lost)
			atSourceErrs = append(atSourceErrs, fmt.Errorf("handle %d on node %d: lost in an earlier migration: %w", h.ID, h.Node, rh.Lost))
			handles = append(handles, rh)
			continue
		}
		fd, le := im.reopen(h, reopenFlags[k])
		if le != nil {
			handleErrs = append(handleErrs, fmt.Errorf("handle %d on node %d: %w", h.ID, h.Node, le))
			rh.Lost = le.errno
		} else {
			rh.FD = fd
		}
		handles = append(handles, rh)
	}
	if len(handleErrs) > 0 && !guestError {
		for _, h := range handles {
			if h.Lost == 0 {
				rawsys.Close(h.FD)
				fs.store.UnreserveFD()
			}
		}
		im.closeAll()
		return rep, fmt.Errorf("handles not re-opened: %w", errors.Join(handleErrs...))
	}

	// The orphans' identities, taken while their descriptors are still
	// ours: they are recorded once nothing can fail any more.
	orphans := make(map[inodestore.Key]string)
	for _, i := range st.Inodes {
		if !i.Unlinked || im.lost[i.ID] != nil {
			continue
		}
		if ri, ok := im.unpinned[i.ID]; ok {
			orphans[ri.Key] = i.Name
		} else if fd, ok := im.fds[i.ID]; ok {
			var stx unix.Statx_t
			if err := statxFD(fd, &stx); err == nil {
				orphans[inodestore.KeyOf(&stx)] = i.Name
			}
		}
	}
	inodes := make([]inodestore.RestoredInode, 0, len(st.Inodes))
	for _, i := range st.Inodes {
		ri := inodestore.RestoredInode{ID: fuseproto.NodeID(i.ID), Lookups: i.Lookups, FD: -1}
		switch le := im.lost[i.ID]; {
		case i.ID == migrate.RootID:
			// The store's own root stays.
		case le != nil:
			ri.Lost, ri.Mode = le.errno, i.Type
		default:
			if u, ok := im.unpinned[i.ID]; ok {
				ri.Handle, ri.Key, ri.Mode = u.Handle, u.Key, u.Mode
			} else {
				ri.FD = im.fds[i.ID]
			}
		}
		inodes = append(inodes, ri)
	}
	// Restore owns every descriptor from here, even on error.
	if err := fs.store.Restore(inodes, handles, fuseproto.NodeID(st.NextNode), st.NextHandle); err != nil {
		return rep, err
	}
	for key, name := range orphans {
		if err := fs.restoreOrphan(key, name); err != nil {
			// The guest keeps the file; only its removal at the last
			// close is lost (and its nlink shows the hidden name).
			fs.log.Warn("migration: unlinked file not recorded as one", "name", name, "err", err)
		}
	}
	s := st.Session
	rep.Session = fuseproto.Session{Major: s.Major, Minor: s.Minor, Flags: s.Flags, MaxWrite: s.MaxWrite,
		MaxReadahead: s.MaxReadahead, MaxPages: s.MaxPages, TimeGran: s.TimeGran}
	rep.LostInodes, rep.LostHandles, rep.LostAtSource = len(inodeErrs), len(handleErrs), len(atSourceErrs)
	if len(atSourceErrs) > 0 {
		fs.log.Info("migration: inodes and handles the source could not reach either stay lost", "count", len(atSourceErrs), "first", atSourceErrs[0])
	}
	rep.Lost = append(inodeErrs, handleErrs...)
	fs.logLost(rep)
	fs.resume(s.Flags)
	return rep, nil
}

// logLost reports what a guest-error import lost: a summary, and the
// first few reasons (a state may lose thousands of inodes below one
// directory).
func (fs *FS) logLost(rep ImportReport) {
	if len(rep.Lost) == 0 {
		return
	}
	fs.log.Warn("migration: inodes and handles lost, the guest gets errors for them",
		"inodes", rep.LostInodes, "handles", rep.LostHandles)
	const shown = 10
	for _, err := range rep.Lost[:min(len(rep.Lost), shown)] {
		fs.log.Warn("migration: lost", "err", err)
	}
	if len(rep.Lost) > shown {
		fs.log.Warn("migration: more lost", "count", len(rep.Lost)-shown)
	}
}

// lostError is why an inode or handle could not be restored, with the
// errno a lost one answers the guest with.
type lostError struct {
	err   error
	errno syscall.Errno
}

func (e *lostError) Error() string { return e.err.Error() }
func (e *lostError) Unwrap() error { return e.err }

// hostLost classifies a failure of the host to find or re-open an object.
// Not found, or not found as a path of directories without symlinks, is
// ESTALE, as for a file handle whose object is gone: the guest's object is
// gone, a name it might look up again is not. A refusal keeps its errno.
// Anything else (a descriptor limit, a failing disk) says nothing about
// the object, and a lost inode keeps its errno for good: EIO.
func hostLost(err error) *lostError {
	errno := syscall.EIO
	var e syscall.Errno
	if errors.As(err, &e) {
		switch e {
		case unix.ENOENT, unix.ENOTDIR, unix.ELOOP, unix.ESTALE:
			errno = unix.ESTALE
		case unix.EACCES, unix.EPERM:
			errno = e
		}
	}
	return &lostError{err: err, errno: errno}
}

// staleLost is a failure that found another object than the source's, or
// none the source could describe.
func staleLost(err error) *lostError { return &lostError{err: err, errno: unix.ESTALE} }

// importer finds a migration state's inodes again on this host.
type importer struct {
	fs   *FS
	st   *migrate.State
	byID map[uint64]*migrate.Inode
	// fds holds an O_PATH descriptor of each inode found and kept; the
	// root's is the store's own.
	fds map[uint64]int
	// unpinned holds the inodes found whose descriptors were let go
	// (inodestore.Store.Unpin): all but those in keep, when the store
	// references objects by file handle. A guest may know millions of
	// inodes; the daemon may not hold a descriptor for each.
	unpinned map[uint64]inodestore.RestoredInode
	// keep marks the inodes whose descriptors the import needs: the
	// directories names are resolved in (find-paths) and the nodes of
	// open handles.
	keep map[uint64]bool
	// lost holds why each inode not found was not.
	lost map[uint64]*lostError
	// mountFD is the shared directory's mount, in file-handles mode.
	mountFD int
}

// findAll opens every inode of the state and records the outcome in fds,
// unpinned or lost. Finding an inode costs a few system calls, and the
// guest is paused meanwhile, so the inodes are found in parallel: in
// find-paths mode level by level from the root, each inode once its parent
// has been found; in file-handles mode all at once.
func (im *importer) findAll() {
	for _, level := range im.levels() {
		results := make([]foundInode, len(level))
		forEachParallel(len(level), func(k int) { results[k] = im.find(level[k]) })
		for k, r := range results {
			id := level[k].ID
			switch {
			case r.lost != nil:
				im.lost[id] = r.lost
			case r.unpinned:
				im.unpinned[id] = r.restored
			default:
				im.fds[id] = r.fd
			}
		}
	}
}

// levels orders the inodes to find, but the root: in find-paths mode by
// their distance from the root, so that every parent is found in an
// earlier level than its children; in file-handles mode as one level. An
// inode whose parents do not lead to the root (a state that did not pass
// validation) goes first, and fails to find its parent.
//
// The depths are computed iteratively, each once: a chain of parents is
// followed up to the first inode of known depth, then numbered on the way
// back, so neither the stack nor the work grows with the depth of the
// tree (a recursion one frame per ancestor let a deep state overflow the
// stack). An inode met again on the chain being followed closes a loop,
// which ends the chain as a missing parent would.
func (im *importer) levels() [][]*migrate.Inode {
	var levels [][]*migrate.Inode
	depth := make(map[uint64]int, len(im.st.Inodes))
	depth[migrate.RootID] = 0
	const onChain = -1
	var chain []*migrate.Inode
	for k := range im.st.Inodes {
		i := &im.st.Inodes[k]
		if i.ID == migrate.RootID {
			continue
		}
		chain = chain[:0]
		d := 0 // the depth of the inode above the chain
		for p := i; ; {
			if pd, ok := depth[p.ID]; ok {
				if pd != onChain {
					d = pd
				}
				break
			}
			depth[p.ID] = onChain
			chain = append(chain, p)
			parent, ok := im.byID[p.Parent]
			if !ok || im.st.Mode != migrate.FindPaths {
				break
			}
			p = parent
		}
		for j := len(chain) - 1; j >= 0; j-- {
			d++
			depth[chain[j].ID] = d
			for len(levels) < d {
				levels = append(levels, nil)
			}
			levels[d-1] = append(levels[d-1], chain[j])
		}
	}
	return levels
}

// foundInode is what find found of one inode.
type foundInode struct {
	fd       int // a kept descriptor
	unpinned bool
	restored inodestore.RestoredInode // when unpinned
	lost     *lostError
}

// find opens inode i; in find-paths mode its parent must have been found
// already. It only reads the importer's maps, so that many run at once.
func (im *importer) find(i *migrate.Inode) foundInode {
	var stx unix.Statx_t
	fd, le := im.open(i, &stx)
	if le == nil && !im.keep[i.ID] {
		if ri, ok, err := im.fs.store.Unpin(fd, &stx); err != nil {
			rawsys.Close(fd)
			le = hostLost(err)
		} else if ok {
			return foundInode{fd: -1, unpinned: true, restored: ri}
		}
	}
	if le != nil {
		return foundInode{fd: -1, lost: le}
	}
	return foundInode{fd: fd}
}

func (im *importer) open(i *migrate.Inode, stx *unix.Statx_t) (int, *lostError) {
	if i.Lost != 0 {
		return -1, &lostError{err: errors.New(i.Invalid), errno: syscall.Errno(i.Lost)}
	}
	if i.Invalid != "" {
		return -1, staleLost(fmt.Errorf("the source could not describe it: %s", i.Invalid))
	}
	if i.Unlinked {
		// Only a name in OrphanDir: one the destination removes when the
		// guest closes the file, so it must not name anything else.
		if name, ok := strings.CutPrefix(i.Name, OrphanDir+"/"); !ok || !validName(name) || i.Parent != migrate.RootID {
			return -1, staleLost(fmt.Errorf("unlinked file kept as %q, not a name in %s", i.Name, OrphanDir))
		}
	}
	var fd int
	var err error
	switch im.st.Mode {
	case migrate.FindPaths:
		pfd, ok := im.fds[i.Parent]
		if !ok {
			if ple := im.lost[i.Parent]; ple != nil {
				// Its reason is reported with the parent; the guest
				// gets the same errno below it as from it.
				return -1, &lostError{err: fmt.Errorf("below lost directory %d", i.Parent), errno: ple.errno}
			}
			return -1, hostLost(fmt.Errorf("parent %d unknown, or not a directory leading to the root", i.Parent))
		}
		if fd, err = openBeneath(pfd, i.Name, unix.O_PATH, 0); err != nil {
			err = fmt.Errorf("open %q in directory %d: %w", i.Name, i.Parent, err)
		}
	case migrate.FileHandles:
		// The handle may name any object of the file system; only one
		// beneath the shared directory is served.
		fd, err = migrate.OpenHandleBeneath(im.mountFD, i.Handle)
	default:
		err = fmt.Errorf("unknown migration mode %q", im.st.Mode)
	}
	if errors.Is(err, migrate.ErrOutsideShare) {
		return -1, staleLost(err)
	}
	if err != nil {
		return -1, hostLost(err)
	}
	if le := im.check(fd, i, stx); le != nil {
		rawsys.Close(fd)
		return -1, le
	}
	return fd, nil
}

// check makes sure the object open at fd is the source's: of its type and,
// when the source sent its file handle along with its path, with that
// handle. It fills stx with the object's statx.
func (im *importer) check(fd int, i *migrate.Inode, stx *unix.Statx_t) *lostError {
	if err := statxFD(fd, stx); err != nil {
		return hostLost(fmt.Errorf("statx: %w", err))
	}
	if t := uint32(stx.Mode) & unix.S_IFMT; t != i.Type {
		return staleLost(fmt.Errorf("found a %s, the guest knows a %s", migrate.TypeName(t), migrate.TypeName(i.Type)))
	}
	if im.st.Mode == migrate.FindPaths && i.Handle != nil {
		switch err := migrate.CheckHandle(fd, i.Handle); {
		case errors.Is(err, migrate.ErrOtherObject):
			return staleLost(err)
		case err != nil:
			// Which object this is cannot be told.
			return &lostError{err: err, errno: unix.EIO}
		}
	}
	return nil
}

// reopenFlags are the flags to open handle h of state st again with, or
// why no honest source sends it. The open happened on the source: creating
// or truncating again would lose data written since, so only the flags
// that shape an open file are kept, and the destination's options decide
// O_NOATIME and O_DIRECT as for a new open. What the source cannot have
// opened refuses the state: O_PATH, O_TMPFILE on anything but the regular
// file it made, write access on a read-only file system or to a directory.
func (fs *FS) reopenFlags(h migrate.Handle, st *migrate.State) (int, error) {
	const (
		tmpfile = unix.O_TMPFILE &^ unix.O_DIRECTORY // __O_TMPFILE
		kept    = unix.O_ACCMODE | unix.O_DIRECTORY | unix.O_NOATIME | unix.O_DIRECT | unix.O_SYNC | unix.O_DSYNC | unix.O_NONBLOCK
	)
	flags := int(h.Flags)
	var typ uint32
	if k, ok := slices.BinarySearchFunc(st.Inodes, h.Node, func(i migrate.Inode, id uint64) int { return cmp.Compare(i.ID, id) }); ok {
		typ = st.Inodes[k].Type
	}
	writes := flags&unix.O_ACCMODE != unix.O_RDONLY || flags&(unix.O_CREAT|unix.O_TRUNC|tmpfile) != 0
	switch {
	case flags&unix.O_ACCMODE == unix.O_ACCMODE:
		return 0, fmt.Errorf("open flags %#o: no such access mode", h.Flags)
	case flags&unix.O_PATH != 0:
		return 0, fmt.Errorf("open flags %#o: O_PATH is no open file", h.Flags)
	case flags&tmpfile != 0 && typ != unix.S_IFREG:
		return 0, fmt.Errorf("open flags %#o: O_TMPFILE on a %s", h.Flags, migrate.TypeName(typ))
	case writes && fs.opts.Readonly:
		return 0, fmt.Errorf("open flags %#o: open for writing on a read-only file system", h.Flags)
	case writes && typ == unix.S_IFDIR:
		return 0, fmt.Errorf("open flags %#o: a directory open for writing", h.Flags)
	}
	if flags&tmpfile != 0 {
		flags &^= unix.O_DIRECTORY // part of O_TMPFILE
	}
	flags &= kept
	if !fs.opts.PreserveNoatime {
		flags &^= unix.O_NOATIME
	}
	if !fs.opts.AllowDirectIO {
		flags &^= unix.O_DIRECT
	}
	return flags, nil
}

// reopen opens handle h again with flags (reopenFlags), after reserving
// its descriptor.
func (im *importer) reopen(h migrate.Handle, flags int) (int, *lostError) {
	if le := im.lost[h.Node]; le != nil {
		return -1, &lostError{err: errors.New("its node is lost"), errno: le.errno}
	}
	if t := im.byID[h.Node].Type; t != unix.S_IFREG && t != unix.S_IFDIR {
		// What Open answers for such a node; no source opens one.
		return -1, &lostError{err: fmt.Errorf("node is a %s, not a file or directory", migrate.TypeName(t)), errno: unix.EBADF}
	}
	if err := im.fs.store.ReserveFD(); err != nil {
		return -1, hostLost(fmt.Errorf("descriptor budget: %w", err))
	}
	fd, err := rawsys.Openat(im.fs.procFD, strconv.Itoa(im.fds[h.Node]), flags|unix.O_CLOEXEC, 0)
	if err != nil {
		im.fs.store.UnreserveFD()
		return -1, hostLost(fmt.Errorf("open: %w", err))
	}
	return fd, nil
}

// closeAll closes the descriptors of the inodes found, for an import that
// is refused.
func (im *importer) closeAll() {
	for id, fd := range im.fds {
		if id != migrate.RootID {
			rawsys.Close(fd)
		}
	}
}
