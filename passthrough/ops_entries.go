package passthrough

import (
	"strconv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// This file holds the operations that create, remove and rename directory
// entries. Each works on the parent's O_PATH descriptor and one checked name;
// none of the system calls used follows a symlink in its last component.

// parentDir fetches a directory inode and its descriptor for one request.
// Call done when finished.
func (fs *FS) parentDir(node fuseproto.NodeID) (p *inodestore.Inode, pfd inodestore.PathFD, done func(), errno syscall.Errno) {
	p, errno = fs.inode(node)
	if errno != 0 {
		return nil, pfd, nil, errno
	}
	if !p.IsDir() {
		fs.put(p)
		return nil, pfd, nil, syscall.ENOTDIR
	}
	pfd, err := fs.store.PathFD(p)
	if err != nil {
		fs.put(p)
		return nil, pfd, nil, fs.errno("parent", err)
	}
	return p, pfd, func() { pfd.Close(); fs.put(p) }, 0
}

// makeNode creates name in the directory p, open at pfd, by running mk with
// the request's caller's identity (and, with ACLs, umask, which the host
// kernel then applies unless the directory has a default ACL), gives it
// the guest's security label and looks it up. A node that cannot be
// labelled is removed again, so the guest never sees an unlabelled one.
func (fs *FS) makeNode(r *fuseproto.Request, p *inodestore.Inode, pfd int, name string, umask uint32, dir bool,
	out *fuse.EntryOut, mk func() error) syscall.Errno {
	c, errno := fs.hostCaller(r)
	if errno != 0 {
		return errno
	}
	if err := fs.asCaller(c, umask, fs.posixACL.Load(), mk); err != nil {
		return fs.errno("create", err)
	}
	if fs.secLabel.Load() && len(r.Ext.SecCtx) > 0 {
		fd, err := openBeneath(pfd, name, unix.O_PATH, 0)
		errno := fs.errno("open new node", err)
		if err == nil {
			errno = fs.setSecurityContext(r, fd)
			rawsys.Close(fd)
		}
		if errno != 0 {
			flags := 0
			if dir {
				flags = unix.AT_REMOVEDIR
			}
			rawsys.Unlinkat(pfd, name, flags)
			return errno
		}
	}
	return fs.lookupIn(p, name, out)
}

// Mknod creates a file, device node, FIFO or socket.
func (fs *FS) Mknod(r *fuseproto.Request, in *fuse.MknodIn, name string, out *fuse.EntryOut) syscall.Errno {
	if fs.opts.Readonly {
		return syscall.EROFS
	}
	p, pfd, done, errno := fs.parentDir(r.Node())
	if errno != 0 {
		return errno
	}
	defer done()
	if errno := newNameErrno(p.ID, name); errno != 0 {
		return errno
	}
	return fs.makeNode(r, p, pfd.FD, name, in.Umask, false, out, func() error {
		return rawsys.Mknodat(pfd.FD, name, in.Mode, int(decodeDev(in.Rdev)))
	})
}

// Mkdir creates a directory.
func (fs *FS) Mkdir(r *fuseproto.Request, in *fuse.MkdirIn, name string, out *fuse.EntryOut) syscall.Errno {
	if fs.opts.Readonly {
		return syscall.EROFS
	}
	p, pfd, done, errno := fs.parentDir(r.Node())
	if errno != 0 {
		return errno
	}
	defer done()
	if errno := newNameErrno(p.ID, name); errno != 0 {
		return errno
	}
	return fs.makeNode(r, p, pfd.FD, name, in.Umask, true, out, func() error {
		return rawsys.Mkdirat(pfd.FD, name, in.Mode)
	})
}

// Symlink creates a symbolic link. Its target is stored as given: it is
// only ever resolved by the guest, never by the daemon.
func (fs *FS) Symlink(r *fuseproto.Request, parent fuseproto.NodeID, name, target string, out *fuse.EntryOut) syscall.Errno {
	if fs.opts.Readonly {
		return syscall.EROFS
	}
	p, pfd, done, errno := fs.parentDir(parent)
	if errno != 0 {
		return errno
	}
	defer done()
	if errno := newNameErrno(p.ID, name); errno != 0 {
		return errno
	}
	// A symlink's mode is always 0777: no umask applies.
	return fs.makeNode(r, p, pfd.FD, name, 0, false, out, func() error {
		return rawsys.Symlinkat(target, pfd.FD, name)
	})
}

// Unlink removes a non-directory entry.
func (fs *FS) Unlink(r *fuseproto.Request, parent fuseproto.NodeID, name string) syscall.Errno {
	return fs.remove(parent, name, 0)
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(r *fuseproto.Request, parent fuseproto.NodeID, name string) syscall.Errno {
	return fs.remove(parent, name, unix.AT_REMOVEDIR)
}

func (fs *FS) remove(parent fuseproto.NodeID, name string, flags int) syscall.Errno {
	if fs.opts.Readonly {
		return syscall.EROFS
	}
	p, pfd, done, errno := fs.parentDir(parent)
	if errno != 0 {
		return errno
	}
	defer done()
	if errno := oldNameErrno(p.ID, name); errno != 0 {
		return errno
	}
	unlink := func() error { return rawsys.Unlinkat(pfd.FD, name, flags) }
	if flags&unix.AT_REMOVEDIR != 0 {
		return fs.errno("rmdir", unlink())
	}
	return fs.errno("unlink", fs.removeKeepingOpen(pfd.FD, name, unlink))
}

// renameFlags are the RENAME2 flags we pass on; others are refused.
const renameFlags = unix.RENAME_NOREPLACE | unix.RENAME_EXCHANGE | unix.RENAME_WHITEOUT

// Rename moves an entry, with RENAME2's flags.
func (fs *FS) Rename(r *fuseproto.Request, in *fuse.RenameIn, oldName, newName string) syscall.Errno {
	if fs.opts.Readonly {
		return syscall.EROFS
	}
	if in.Flags&^renameFlags != 0 || !validName(oldName) || !validName(newName) {
		return syscall.EINVAL
	}
	oldDir, newDir := r.Node(), fuseproto.NodeID(in.Newdir)
	if errno := oldNameErrno(oldDir, oldName); errno != 0 {
		return errno
	}
	if errno := newNameErrno(newDir, newName); errno != 0 {
		return errno
	}
	_, oldFD, doneOld, errno := fs.parentDir(oldDir)
	if errno != 0 {
		return errno
	}
	defer doneOld()
	_, newFD, doneNew, errno := fs.parentDir(newDir)
	if errno != 0 {
		return errno
	}
	defer doneNew()
	rename := func() error { return rawsys.Renameat2(oldFD.FD, oldName, newFD.FD, newName, uint(in.Flags)) }
	if in.Flags&(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return fs.errno("rename", rename()) // the target keeps its name, if any
	}
	return fs.errno("rename", fs.removeKeepingOpen(newFD.FD, newName, rename))
}

// Link makes a new name for an existing object.
func (fs *FS) Link(r *fuseproto.Request, in *fuse.LinkIn, newName string, out *fuse.EntryOut) syscall.Errno {
	if fs.opts.Readonly {
		return syscall.EROFS
	}
	i, errno := fs.inode(fuseproto.NodeID(in.Oldnodeid))
	if errno != 0 {
		return errno
	}
	defer fs.put(i)
	ifd, err := fs.store.PathFD(i)
	if err != nil {
		return fs.errno("link", err)
	}
	defer ifd.Close()
	p, pfd, done, errno := fs.parentDir(r.Node())
	if errno != 0 {
		return errno
	}
	defer done()
	// linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; following the
	// magic link in /proc/self/fd reaches the same object without it.
	if errno := newNameErrno(p.ID, newName); errno != 0 {
		return errno
	}
	if err := rawsys.Linkat(fs.procFD, strconv.Itoa(ifd.FD), pfd.FD, newName, unix.AT_SYMLINK_FOLLOW); err != nil {
		return fs.errno("link", err)
	}
	// An O_TMPFILE file linked into the tree is an orphan no more.
	fs.linked(i.Key)
	return fs.lookupIn(p, newName, out)
}
