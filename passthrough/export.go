package passthrough

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
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
	// same object (--migration-verify-handles).
	VerifyHandles bool
	// ConfirmPaths re-resolves every path before it is sent and marks an
	// inode whose path leads elsewhere as invalid
	// (--migration-confirm-paths).
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
// marked invalid, with the reason.
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
		st.Handles = append(st.Handles, migrate.Handle{ID: h.ID, Node: uint64(h.Node), Flags: int32(h.Flags), GuestFlags: h.GuestFlags})
	}
	var rootPath string
	if mode == migrate.FindPaths {
		p, err := fs.linkOf(fs.store.Root())
		if err != nil {
			return nil, fmt.Errorf("path of the shared directory: %w", err)
		}
		rootPath = p
	}
	// rel[id] is the inode's path relative to the shared directory;
	// dirs maps a directory's relative path to its node id.
	rel := make(map[fuseproto.NodeID]string, len(snap.Inodes))
	dirs := make(map[string]uint64)
	for _, e := range snap.Inodes {
		i := e.Inode
		mi := migrate.Inode{ID: uint64(i.ID), Lookups: e.Lookups, Type: i.Mode}
		if i.ID == fuseproto.RootID {
			st.Inodes = append(st.Inodes, mi)
			continue
		}
		switch mode {
		case migrate.FileHandles:
			h, err := fs.handleOf(i)
			if err != nil {
				mi.Invalid = err.Error()
			} else {
				mi.Handle = &migrate.FileHandle{MountID: h.MountID, Type: h.Type, Bytes: h.Bytes}
			}
		case migrate.FindPaths:
			p, err := fs.relPath(i, rootPath)
			if err != nil {
				mi.Invalid = err.Error()
			} else {
				rel[i.ID] = p
				if i.IsDir() {
					dirs[p] = uint64(i.ID)
				}
			}
		}
		st.Inodes = append(st.Inodes, mi)
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

// linkOf reads the /proc/self/fd link of i's descriptor: the path of the
// object as the kernel knows it now.
func (fs *FS) linkOf(i *inodestore.Inode) (string, error) {
	pfd, err := fs.store.PathFD(i)
	if err != nil {
		return "", err
	}
	defer pfd.Close()
	return fs.readLink(pfd.FD)
}

func (fs *FS) readLink(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fs.procFD, strconv.Itoa(fd), buf)
	if err != nil {
		return "", fmt.Errorf("readlink: %w", err)
	}
	if n == len(buf) {
		return "", fmt.Errorf("path longer than %d bytes", len(buf))
	}
	return string(buf[:n]), nil
}

// relPath is i's path relative to the shared directory at rootPath.
func (fs *FS) relPath(i *inodestore.Inode, rootPath string) (string, error) {
	pfd, err := fs.store.PathFD(i)
	if err != nil {
		return "", fmt.Errorf("gone from the host: %w", err)
	}
	defer pfd.Close()
	var stx unix.Statx_t
	if err := statxFD(pfd.FD, &stx); err != nil {
		return "", fmt.Errorf("statx: %w", err)
	}
	if stx.Nlink == 0 {
		return "", fmt.Errorf("unlinked on the host: it has no path")
	}
	link, err := fs.readLink(pfd.FD)
	if err != nil {
		return "", err
	}
	p, ok := strings.CutPrefix(link, rootPath+"/")
	if !ok || p == "" {
		return "", fmt.Errorf("outside the shared directory (now %s)", link)
	}
	return p, nil
}

// handleOf is i's file handle: the one it is referenced by, or one made
// now for an inode referenced by descriptor.
func (fs *FS) handleOf(i *inodestore.Inode) (*inodestore.FileHandle, error) {
	if i.Handle != nil {
		return i.Handle, nil
	}
	pfd, err := fs.store.PathFD(i)
	if err != nil {
		return nil, err
	}
	defer pfd.Close()
	return inodestore.NameToHandle(pfd.FD)
}
