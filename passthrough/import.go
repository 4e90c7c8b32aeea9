package passthrough

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/migrate"
)

// ImportOptions are a migration destination's settings.
type ImportOptions struct {
	// OnError is what happens to inodes and handles that cannot be found
	// or re-opened (--migration-on-error).
	OnError migrate.OnError
}

// ImportState rebuilds, in a file system that has served nothing yet, what
// a migration source's guest knew: every inode under its node id with its
// lookup count, every open handle re-opened with its flags, the id
// counters, and the negotiated session, which it returns for the request
// layer (fuseproto.Server.SetSession). The state must have passed
// migrate.Unmarshal's validation.
//
// Options that change what the guest sees must be the same on both sides;
// a difference is an error before anything is applied. So is an inode that
// cannot be found, or is found as another type of object (the
// --migration-on-error=abort behaviour); nothing is applied then either.
func (fs *FS) ImportState(st *migrate.State, opts ImportOptions) (fuseproto.Session, error) {
	var sess fuseproto.Session
	if d := st.Options.Diff(fs.MigrationOptions()); len(d) > 0 {
		return sess, fmt.Errorf("the destination's options differ from the source's: %s", strings.Join(d, "; "))
	}
	rootPFD, err := fs.store.PathFD(fs.store.Root())
	if err != nil {
		return sess, err
	}
	defer rootPFD.Close()

	byID := make(map[uint64]*migrate.Inode, len(st.Inodes))
	for k := range st.Inodes {
		byID[st.Inodes[k].ID] = &st.Inodes[k]
	}
	fds := map[uint64]int{}
	closeAll := func() {
		for id, fd := range fds {
			if id != migrate.RootID {
				unix.Close(fd)
			}
		}
	}
	fds[migrate.RootID] = rootPFD.FD
	var mountFD = -1
	if st.Mode == migrate.FileHandles {
		// open_by_handle_at wants a real descriptor on the mount.
		mountFD, err = unix.Openat(fs.procFD, strconv.Itoa(rootPFD.FD), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return sess, fmt.Errorf("open the shared directory's mount: %w", err)
		}
		defer unix.Close(mountFD)
	}
	var errs []error
	var find func(i *migrate.Inode, depth int) (int, error)
	find = func(i *migrate.Inode, depth int) (int, error) {
		if fd, ok := fds[i.ID]; ok {
			return fd, nil
		}
		if i.Invalid != "" {
			return -1, errors.New(i.Invalid)
		}
		if depth > len(st.Inodes) {
			return -1, errors.New("parent chain loops")
		}
		var fd int
		var err error
		switch st.Mode {
		case migrate.FindPaths:
			parent, ok := byID[i.Parent]
			if !ok {
				return -1, fmt.Errorf("parent %d unknown", i.Parent)
			}
			pfd, perr := find(parent, depth+1)
			if perr != nil {
				return -1, fmt.Errorf("parent %d: %w", i.Parent, perr)
			}
			fd, err = openBeneath(pfd, i.Name, unix.O_PATH, 0)
		case migrate.FileHandles:
			fd, err = migrate.OpenHandle(mountFD, i.Handle)
		}
		if err != nil {
			return -1, err
		}
		var stx unix.Statx_t
		if err := statxFD(fd, &stx); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if uint32(stx.Mode)&unix.S_IFMT != i.Type {
			unix.Close(fd)
			return -1, fmt.Errorf("found an object of type %o, the guest knows type %o", stx.Mode&unix.S_IFMT, i.Type)
		}
		fds[i.ID] = fd
		return fd, nil
	}
	for k := range st.Inodes {
		i := &st.Inodes[k]
		if _, err := find(i, 0); err != nil {
			errs = append(errs, fmt.Errorf("inode %d (%s): %w", i.ID, migrate.Describe(i, nil), err))
		}
	}
	if len(errs) > 0 {
		closeAll()
		return sess, fmt.Errorf("%d of %d inodes not found: %w", len(errs), len(st.Inodes), errors.Join(errs...))
	}

	var handles []inodestore.RestoredHandle
	undoHandles := func() {
		for _, h := range handles {
			unix.Close(h.FD)
			fs.store.UnreserveFD()
		}
	}
	for _, h := range st.Handles {
		i := byID[h.Node]
		if i.Type != unix.S_IFREG && i.Type != unix.S_IFDIR {
			errs = append(errs, fmt.Errorf("handle %d: node %d is not a file or directory", h.ID, h.Node))
			continue
		}
		if err := fs.store.ReserveFD(); err != nil {
			errs = append(errs, fmt.Errorf("handle %d: %w", h.ID, err))
			continue
		}
		// The open already happened on the source: creating or
		// truncating again would lose data written since.
		flags := int(h.Flags)&^(unix.O_CREAT|unix.O_EXCL|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_PATH) | unix.O_CLOEXEC
		fd, err := unix.Openat(fs.procFD, strconv.Itoa(fds[h.Node]), flags, 0)
		if err != nil {
			fs.store.UnreserveFD()
			errs = append(errs, fmt.Errorf("handle %d on node %d: %w", h.ID, h.Node, err))
			continue
		}
		handles = append(handles, inodestore.RestoredHandle{ID: h.ID, Node: fuseproto.NodeID(h.Node), FD: fd, Flags: int(h.Flags), GuestFlags: h.GuestFlags})
	}
	if len(errs) > 0 {
		undoHandles()
		closeAll()
		return sess, fmt.Errorf("handles not re-opened: %w", errors.Join(errs...))
	}

	inodes := make([]inodestore.RestoredInode, 0, len(st.Inodes))
	for _, i := range st.Inodes {
		fd := fds[i.ID]
		if i.ID == migrate.RootID {
			fd = -1 // the store's own root stays
		}
		inodes = append(inodes, inodestore.RestoredInode{ID: fuseproto.NodeID(i.ID), Lookups: i.Lookups, FD: fd})
	}
	// Restore owns every descriptor from here, even on error.
	if err := fs.store.Restore(inodes, handles, fuseproto.NodeID(st.NextNode), st.NextHandle); err != nil {
		return sess, err
	}
	s := st.Session
	sess = fuseproto.Session{Major: s.Major, Minor: s.Minor, Flags: s.Flags, MaxWrite: s.MaxWrite,
		MaxReadahead: s.MaxReadahead, MaxPages: s.MaxPages, TimeGran: s.TimeGran}
	fs.resume(s.Flags)
	return sess, nil
}
