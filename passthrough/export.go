package passthrough

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
	"github.com/ferryfs/ferryfs/migrate"
)

// MigrationOptions are the options a destination must share with this
// file system, as the migration state carries them.
func (fs *FS) MigrationOptions() migrate.Options {
	o := fs.opts
	var uids, gids []string
	for _, r := range o.UIDMap.Rules() {
		uids = append(uids, r.String())
	}
	for _, r := range o.GIDMap.Rules() {
		gids = append(gids, r.String())
	}
	var xm string
	if o.XattrMap != nil {
		xm = o.XattrMap.String()
	}
	return migrate.Options{
		Cache: o.Cache.String(), Writeback: o.Writeback, Readonly: o.Readonly, Xattr: o.Xattr,
		PosixACL: o.PosixACL, SecurityLabel: o.SecurityLabel, XattrMap: xm,
		TranslateUID: uids, TranslateGID: gids,
		AnnounceSubmount: o.AnnounceSubmounts, KillprivV2: o.KillprivV2,
	}
}

// ExportOptions are a migration source's settings.
type ExportOptions struct {
	// Mode is how the destination finds inodes (--migration-mode).
	Mode migrate.Mode
	// VerifyHandles attaches each inode's file handle in find-paths mode
	// too, so the destination can check that a path led it to the very
	// same object (--migration-verify-handles). An inode without a file
	// handle is marked invalid: its path could not be verified.
	VerifyHandles bool
	// ConfirmPaths re-resolves every path beneath the shared directory
	// before it is sent and marks an inode whose path leads elsewhere, or
	// nowhere, as invalid (--migration-confirm-paths). Find-paths mode
	// only.
	ConfirmPaths bool
}

// ExportState describes everything the guest knows, for a migration
// destination: sess is what INIT negotiated, mode how inodes are to be
// found. Requests must not change the tables meanwhile (the rings are
// stopped); host changes are fine: every inode is described as it is now.
//
// In find-paths mode an inode's path comes from its descriptor's link in
// /proc/self/fd, so renames on the host since the lookup are followed. Each
// inode is sent as its nearest known ancestor plus the rest of the path
// (usually its parent and its name). An object unlinked on the host or
// moved out of the shared directory cannot be described by path and is
// marked invalid, with the reason; so is one whose path does not lead back
// to it, with opts.ConfirmPaths. With opts.VerifyHandles each inode also
// carries its file handle, for the destination to check what the path led
// it to. An inode or handle lost by an earlier migration is sent as lost,
// with the errno the guest gets for it.
func (fs *FS) ExportState(opts ExportOptions, sess fuseproto.Session) (*migrate.State, error) {
	mode := opts.Mode
	snap := fs.store.Snapshot()
	defer fs.store.Release(snap)
	st := &migrate.State{
		Mode: mode,
		Session: migrate.Session{Major: sess.Major, Minor: sess.Minor, Flags: sess.Flags, MaxWrite: sess.MaxWrite,
			MaxReadahead: sess.MaxReadahead, MaxPages: sess.MaxPages, TimeGran: sess.TimeGran},
		Options:    fs.MigrationOptions(),
		NextNode:   uint64(snap.NextNode),
		NextHandle: snap.NextHandle,
		Inodes:     make([]migrate.Inode, 0, len(snap.Inodes)),
		Handles:    make([]migrate.Handle, 0, len(snap.Handles)),
	}
	for _, h := range snap.Handles {
		st.Handles = append(st.Handles, migrate.Handle{ID: h.ID, Node: uint64(h.Node), Flags: int32(h.Flags), GuestFlags: h.GuestFlags, Lost: uint32(h.Lost)})
	}
	var root exportRoot
	if mode == migrate.FindPaths {
		pfd, err := fs.store.PathFD(fs.store.Root())
		if err != nil {
			return nil, fmt.Errorf("shared directory: %w", err)
		}
		defer pfd.Close()
		p, err := fs.readLink(pfd.FD)
		if err != nil {
			return nil, fmt.Errorf("path of the shared directory: %w", err)
		}
		root = exportRoot{path: p, fd: pfd.FD}
	}
	// Describing an inode costs a few system calls and nothing else
	// depends on it, so the inodes are described in parallel: the guest is
	// paused meanwhile, and this is most of what its downtime costs.
	described := make([]describedInode, len(snap.Inodes))
	forEachParallel(len(snap.Inodes), func(k int) {
		described[k] = fs.describe(snap.Inodes[k], mode, root, opts)
	})
	// rel[id] is the inode's path relative to the shared directory;
	// dirs maps a directory's relative path to its node id.
	rel := make(map[fuseproto.NodeID]string, len(snap.Inodes))
	dirs := make(map[string]uint64)
	// search maps the identity of objects pathOf could not name to their
	// indexes in st.Inodes.
	search := make(map[inodestore.Key][]int)
	for k, d := range described {
		st.Inodes = append(st.Inodes, d.mi)
		if d.search != nil {
			search[d.search.key] = append(search[d.search.key], k)
		}
		if d.hasPath {
			id := snap.Inodes[k].Inode.ID
			rel[id] = d.path
			if d.dir {
				dirs[d.path] = uint64(id)
			}
		}
	}
	if len(search) > 0 {
		fs.resolveBySearch(st, search, root, rel, opts)
	}
	if mode == migrate.FindPaths {
		for k := range st.Inodes {
			mi := &st.Inodes[k]
			p, ok := rel[fuseproto.NodeID(mi.ID)]
			if !ok {
				continue
			}
			mi.Parent, mi.Name = migrate.RootID, p
			// The nearest ancestor the guest knows: the parent itself
			// unless the guest forgot it.
			for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
				if id, ok := dirs[dir]; ok {
					mi.Parent, mi.Name = id, p[len(dir)+1:]
					break
				}
			}
		}
	}
	return st, nil
}

// describedInode is one inode as ExportState describes it.
type describedInode struct {
	mi migrate.Inode
	// path is the inode's path relative to the shared directory in
	// find-paths mode, when hasPath; dir says a directory's path, which
	// others may be described relative to.
	path         string
	hasPath, dir bool
	// search is set when a search of the shared directory may still find
	// the object.
	search *searchNeeded
}

// describe describes one inode for ExportState. It is called for many
// inodes at once.
func (fs *FS) describe(e inodestore.InodeEntry, mode migrate.Mode, root exportRoot, opts ExportOptions) describedInode {
	i := e.Inode
	d := describedInode{mi: migrate.Inode{ID: uint64(i.ID), Lookups: e.Lookups, Type: i.Mode}}
	mi := &d.mi
	if i.ID == fuseproto.RootID {
		return d
	}
	if e := i.Lost(); e != 0 {
		// Lost by an earlier migration: there is nothing to describe,
		// and the next destination loses it too.
		mi.Invalid = fmt.Sprintf("lost in an earlier migration: %v", e)
		mi.Lost = uint32(e)
		return d
	}
	if name := fs.orphanName(i.Key); name != "" {
		// Removed by the guest while open: it has a name in OrphanDir,
		// never a guest-known directory.
		mi.Unlinked, mi.Parent, mi.Name = true, migrate.RootID, OrphanDir+"/"+name
	}
	switch mode {
	case migrate.FileHandles:
		h, err := fs.handleOf(i)
		if err != nil {
			mi.Invalid = err.Error()
			mi.Gone = err == errRemovedOnHost && !fs.store.IsOpen(i.Key)
		} else {
			mi.Handle = stateHandle(h)
		}
	case migrate.FindPaths:
		if mi.Unlinked {
			h, err := fs.orphanPath(i, mi.Name, root, opts)
			if err != nil {
				mi.Invalid = err.Error()
				break
			}
			d.path, d.hasPath = mi.Name, true
			if h != nil {
				mi.Handle = stateHandle(h)
			}
			break
		}
		p, h, err := fs.pathOf(i, root, opts)
		errors.As(err, &d.search)
		if err != nil {
			mi.Invalid = err.Error()
			// Without a handle the guest only has it cached, and the
			// source too would tell it the name is gone.
			mi.Gone = err == errRemovedOnHost && !fs.store.IsOpen(i.Key)
			break
		}
		d.path, d.hasPath, d.dir = p, true, i.IsDir()
		if h != nil {
			mi.Handle = stateHandle(h)
		}
	}
	return d
}

// resolveBySearch walks the shared directory once for every object in
// search and gives each found one its path (rel) instead of its Invalid
// reason. Hard links are files, so none of them is a directory others
// hang below.
func (fs *FS) resolveBySearch(st *migrate.State, search map[inodestore.Key][]int, root exportRoot, rel map[fuseproto.NodeID]string, opts ExportOptions) {
	want := make(map[inodestore.Key]bool, len(search))
	for k := range search {
		want[k] = true
	}
	found := fs.searchPaths(root.fd, want)
	for k, idx := range search {
		p, ok := found[k]
		if !ok {
			continue
		}
		for _, x := range idx {
			mi := &st.Inodes[x]
			if opts.VerifyHandles {
				fd, err := openBeneath(root.fd, p, unix.O_PATH, 0)
				if err != nil {
					continue
				}
				h, err := inodestore.NameToHandle(fd)
				rawsys.Close(fd)
				if err != nil {
					continue
				}
				mi.Handle = stateHandle(h)
			}
			mi.Invalid = ""
			rel[fuseproto.NodeID(mi.ID)] = p
		}
	}
}

// stateHandle is h as the migration state carries it.
func stateHandle(h *inodestore.FileHandle) *migrate.FileHandle {
	return &migrate.FileHandle{MountID: h.MountID, Type: h.Type, Bytes: h.Bytes}
}

func (fs *FS) readLink(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := rawsys.Readlinkat(fs.procFD, strconv.Itoa(fd), buf)
	if err != nil {
		return "", fmt.Errorf("readlink: %w", err)
	}
	if n == len(buf) {
		return "", fmt.Errorf("path longer than %d bytes", len(buf))
	}
	return string(buf[:n]), nil
}

// exportRoot is the shared directory as find-paths export needs it: its
// path as the kernel shows it in /proc/self/fd links, and a descriptor to
// resolve paths beneath.
type exportRoot struct {
	path string
	fd   int
}

// pathOf describes i in find-paths mode: its path relative to the shared
// directory, confirmed if opts.ConfirmPaths, and its file handle if
// opts.VerifyHandles (nil otherwise). All of it comes from the one
// descriptor of i, so it describes one object.
func (fs *FS) pathOf(i *inodestore.Inode, root exportRoot, opts ExportOptions) (string, *inodestore.FileHandle, error) {
	pfd, err := fs.store.PathFDUncached(i)
	if err != nil {
		return "", nil, fmt.Errorf("gone from the host: %w", err)
	}
	defer pfd.Close()
	link, err := fs.readLink(pfd.FD)
	if err != nil {
		return "", nil, err
	}
	p, ok := strings.CutPrefix(link, root.path+"/")
	if ok && p != "" && !strings.HasSuffix(p, deletedSuffix) && !opts.ConfirmPaths {
		// The usual case, without a statx: the kernel marks the link of
		// an object with no name left (nlink 0) as deleted.
		return fs.verifiedPath(i, pfd.FD, p, opts)
	}
	var stx unix.Statx_t
	if err := statxFD(pfd.FD, &stx); err != nil {
		return "", nil, fmt.Errorf("statx: %w", err)
	}
	if stx.Nlink == 0 {
		return "", nil, errRemovedOnHost
	}
	if !ok || p == "" {
		// Moved out of the shared directory; another hard link may
		// remain inside.
		return "", nil, &searchNeeded{key: inodestore.KeyOf(&stx), why: fmt.Sprintf("outside the shared directory (now %s)", link)}
	}
	if strings.HasSuffix(p, deletedSuffix) && confirmPath(root.fd, p, &stx) != nil {
		// The name it was found by is gone but it has other links
		// (nlink > 0): the kernel shows the old name marked deleted.
		return "", nil, &searchNeeded{key: inodestore.KeyOf(&stx), why: "its name was removed on the host"}
	}
	if opts.ConfirmPaths {
		if err := confirmPath(root.fd, p, &stx); err != nil {
			return "", nil, err
		}
	}
	return fs.verifiedPath(i, pfd.FD, p, opts)
}

// verifiedPath is pathOf's answer p for i, open at fd, with i's file handle
// if opts.VerifyHandles.
func (fs *FS) verifiedPath(i *inodestore.Inode, fd int, p string, opts ExportOptions) (string, *inodestore.FileHandle, error) {
	if !opts.VerifyHandles {
		return p, nil, nil
	}
	h := i.Handle
	if h == nil {
		var err error
		if h, err = inodestore.NameToHandle(fd); err != nil {
			return "", nil, fmt.Errorf("no file handle to verify its path by: %w", err)
		}
	}
	return p, h, nil
}

// orphanPath checks, for find-paths mode, that the orphan i is still to be
// found as p (OrphanDir/name), and returns its file handle if
// opts.VerifyHandles. Its descriptor's link shows the name the guest
// removed, so pathOf cannot be asked.
func (fs *FS) orphanPath(i *inodestore.Inode, p string, root exportRoot, opts ExportOptions) (*inodestore.FileHandle, error) {
	pfd, err := fs.store.PathFDUncached(i)
	if err != nil {
		return nil, fmt.Errorf("gone from the host: %w", err)
	}
	defer pfd.Close()
	var stx unix.Statx_t
	if err := statxFD(pfd.FD, &stx); err != nil {
		return nil, fmt.Errorf("statx: %w", err)
	}
	if err := confirmPath(root.fd, p, &stx); err != nil {
		return nil, fmt.Errorf("unlinked while open, and its name in %s is gone: %w", OrphanDir, err)
	}
	if !opts.VerifyHandles {
		return nil, nil
	}
	if i.Handle != nil {
		return i.Handle, nil
	}
	h, err := inodestore.NameToHandle(pfd.FD)
	if err != nil {
		return nil, fmt.Errorf("no file handle to verify its path by: %w", err)
	}
	return h, nil
}

// errRemovedOnHost is pathOf's and handleOf's answer for an object without
// a name left.
var errRemovedOnHost = errors.New("removed on the host: it has no path")

// deletedSuffix is how a /proc/self/fd link marks a name that was
// removed.
const deletedSuffix = " (deleted)"

// searchNeeded is pathOf's answer for an object that still has a name in
// the shared directory, but not the one its descriptor shows: ExportState
// finds one by walking the directory (virtiofsd's fallback too).
type searchNeeded struct {
	key inodestore.Key
	why string
}

func (e *searchNeeded) Error() string { return e.why + ", and no other name leads to it" }

// confirmPath checks that p, resolved beneath the shared directory open at
// rootFD as a destination resolves it, leads to the object want describes.
// A /proc/self/fd link is only the kernel's best account of a path: a name
// replaced on the host reads as "name (deleted)" while the object lives on
// through another link, a path may run through a mount that hides what the
// object was found under, and a rename may land between reading the link
// and now. Sending such a path would give the guest another object.
func confirmPath(rootFD int, p string, want *unix.Statx_t) error {
	fd, err := openBeneath(rootFD, p, unix.O_PATH, 0)
	if err != nil {
		return fmt.Errorf("path %q does not lead back to it: %w", p, err)
	}
	defer rawsys.Close(fd)
	var got unix.Statx_t
	if err := statxFD(fd, &got); err != nil {
		return fmt.Errorf("path %q: statx: %w", p, err)
	}
	if got.Dev_major != want.Dev_major || got.Dev_minor != want.Dev_minor || got.Ino != want.Ino {
		return fmt.Errorf("path %q leads to another object (inode %d on %d:%d, not %d on %d:%d)",
			p, got.Ino, got.Dev_major, got.Dev_minor, want.Ino, want.Dev_major, want.Dev_minor)
	}
	return nil
}

// handleOf is i's file handle: the one it is referenced by, or one made
// now for an inode referenced by descriptor.
//
// A destination serves an object found by handle only once the kernel has
// shown where it is (migrate.OpenHandleBeneath), which it can for a
// non-directory only from a connectable handle, one that carries the
// parent too: a non-directory is described by one where the kernel makes
// it (Linux 6.13 and newer, for an object whose place it knows), by its
// plain handle otherwise.
//
// An object with no name left on the host is errRemovedOnHost: the
// destination could not tell where it is.
func (fs *FS) handleOf(i *inodestore.Inode) (*inodestore.FileHandle, error) {
	pfd, err := fs.store.PathFDUncached(i)
	if err != nil {
		return nil, fmt.Errorf("gone from the host: %w", err)
	}
	defer pfd.Close()
	var stx unix.Statx_t
	if err := statxFD(pfd.FD, &stx); err != nil {
		return nil, fmt.Errorf("statx: %w", err)
	}
	if stx.Nlink == 0 {
		return nil, errRemovedOnHost
	}
	if !i.IsDir() {
		if h, err := inodestore.NameToConnectableHandle(pfd.FD); err == nil {
			return h, nil
		}
	}
	if i.Handle != nil {
		return i.Handle, nil
	}
	return inodestore.NameToHandle(pfd.FD)
}
