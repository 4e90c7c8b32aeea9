package passthrough

import (
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/idmap"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// Lookup finds name in parent and counts one lookup of it.
func (fs *FS) Lookup(r *fuseproto.Request, parent fuseproto.NodeID, name string, out *fuse.EntryOut) syscall.Errno {
	p, errno := fs.inode(parent)
	if errno != 0 {
		return errno
	}
	defer fs.put(p)
	return fs.lookupIn(p, name, out)
}

// lookupIn looks name up in directory p and records the lookup.
func (fs *FS) lookupIn(p *inodestore.Inode, name string, out *fuse.EntryOut) syscall.Errno {
	if !p.IsDir() {
		return syscall.ENOTDIR
	}
	pfd, err := fs.store.PathFD(p)
	if err != nil {
		return fs.errno("lookup", err)
	}
	defer pfd.Close()
	var fd int
	switch {
	case name == ".." && p.ID == fuseproto.RootID:
		// The guest cannot climb above the shared directory.
		fd, err = rawsys.Openat(pfd.FD, ".", unix.O_PATH|unix.O_CLOEXEC, 0)
	case name == "..":
		fd, err = fs.openParent(pfd.FD)
	case name == "" || strings.ContainsAny(name, "/\x00"):
		return syscall.EINVAL
	case hiddenName(p.ID, name):
		return syscall.ENOENT
	default:
		fd, err = openBeneath(pfd.FD, name, unix.O_PATH, 0)
	}
	if err != nil {
		return fs.errno("lookup", err)
	}
	parentMount := p.Key.MountID
	if name == "." || name == ".." {
		parentMount = noParentMount // never a submount of itself or its child
	}
	return fs.insert(fd, out, parentMount)
}

// insert records a lookup of the object open at fd (an O_PATH descriptor
// that insert takes over), found in a directory on mount parentMount, and
// describes it in out.
func (fs *FS) insert(fd int, out *fuse.EntryOut, parentMount uint64) syscall.Errno {
	i, errno := fs.insertRef(fd, out, parentMount)
	if errno == 0 {
		fs.put(i)
	}
	return errno
}

// insertRef is insert that also returns the inode, with a reference the
// caller gives back with put.
func (fs *FS) insertRef(fd int, out *fuse.EntryOut, parentMount uint64) (*inodestore.Inode, syscall.Errno) {
	var stx unix.Statx_t
	if err := statxFD(fd, &stx); err != nil {
		rawsys.Close(fd)
		return nil, fs.errno("statx", err)
	}
	fs.checkMount(fd, stx.Mnt_id)
	i, err := fs.store.Insert(fd, &stx)
	if err != nil {
		return nil, fs.errno("insert inode", err)
	}
	fs.fillEntry(out, i, &stx, parentMount)
	return i, 0
}

// insertOpened records a lookup of the object open at fd (any descriptor,
// which stays the caller's), as CREATE and TMPFILE need, and returns the
// inode with a reference. A new file is on its directory's mount.
func (fs *FS) insertOpened(fd int, out *fuse.EntryOut) (*inodestore.Inode, syscall.Errno) {
	pathFD, err := fs.reopenPath(fd)
	if err != nil {
		return nil, fs.errno("reopen", err)
	}
	return fs.insertRef(pathFD, out, noParentMount)
}

// noParentMount stands for "not a submount, whatever the mounts say", for
// entries that cannot be one: new files, "." and "..".
const noParentMount = ^uint64(0)

// Forget drops lookups.
func (fs *FS) Forget(node fuseproto.NodeID, nlookup uint64) { fs.store.Forget(node, nlookup) }

// GetAttr returns the attributes of the node.
func (fs *FS) GetAttr(r *fuseproto.Request, in *fuse.GetAttrIn, out *fuse.AttrOut) syscall.Errno {
	i, errno := fs.inode(r.Node())
	if errno != 0 {
		return errno
	}
	defer fs.put(i)
	return fs.getAttr(i, out)
}

func (fs *FS) getAttr(i *inodestore.Inode, out *fuse.AttrOut) syscall.Errno {
	pfd, err := fs.store.PathFD(i)
	if err != nil {
		return fs.errno("getattr", err)
	}
	defer pfd.Close()
	var stx unix.Statx_t
	if err := statxFD(pfd.FD, &stx); err != nil {
		return fs.errno("getattr", err)
	}
	fs.fillAttr(&out.Attr, &stx)
	out.SetTimeout(fs.timeout)
	return 0
}

// SetAttr changes mode, owner, size and times, in that order, as virtiofsd
// does, and returns the new attributes. It makes the changes with the
// caller's identity (its fsuid and fsgid, translated), as CREATE and MKDIR
// create with it: whether a change is allowed depends on who asks (only
// the owner sets explicit times or the mode, only root gives a file away,
// touching needs ownership or write permission, a mode change by someone
// outside the file's group drops its setgid bit), and the host kernel then
// applies every rule of a local file system. The guest kernel does not
// check these for virtio-fs (no default_permissions), so a daemon that
// changed attributes as root would let any guest user through. A caller
// that is the daemon's own identity (the guest's root, untranslated) costs
// nothing extra; the guest's supplementary groups are not known here, so
// permission that only one of them grants is refused.
func (fs *FS) SetAttr(r *fuseproto.Request, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if fs.opts.Readonly {
		return syscall.EROFS
	}
	c, errno := fs.hostCaller(r)
	if errno != 0 {
		return errno
	}
	i, errno := fs.inode(r.Node())
	if errno != 0 {
		return errno
	}
	defer fs.put(i)
	var h *inodestore.Handle
	if fh, ok := in.GetFh(); ok {
		var err error
		if h, err = fs.store.GetHandle(fh, i.ID); err != nil {
			return fs.errno("setattr", err)
		}
		defer fs.store.PutHandle(h)
	}
	pfd, err := fs.store.PathFD(i)
	if err != nil {
		return fs.errno("setattr", err)
	}
	defer pfd.Close()
	uid, gid := -1, -1
	if v, ok := in.GetUID(); ok {
		host, err := fs.opts.UIDMap.ToHost(idmap.GuestUID(v))
		if err != nil {
			return idErrno(err)
		}
		uid = int(host)
	}
	if v, ok := in.GetGID(); ok {
		host, err := fs.opts.GIDMap.ToHost(idmap.GuestGID(v))
		if err != nil {
			return idErrno(err)
		}
		gid = int(host)
	}
	var op string
	err = fs.asCaller(c, 0, false, func() (err error) {
		op, err = fs.setAttrs(i, h, pfd.FD, in, uid, gid)
		return err
	})
	if err != nil {
		return fs.errno(op, err)
	}
	if in.Valid&(fuse.FATTR_UID|fuse.FATTR_GID|fuse.FATTR_SIZE) != 0 {
		// What the kernel does for security.capability on chown and
		// truncate, done for its --xattrmap name by the daemon: the
		// caller may not remove such an attribute itself.
		if err := fs.clearCapability(pfd.FD); err != nil {
			return fs.errno("setattr", err)
		}
	}
	return fs.getAttr(i, out)
}

// setAttrs makes the changes in of SetAttr to i (open at the O_PATH
// descriptor pfd, and through h when the guest gave a handle), chown to
// uid and gid (host ids, -1 to keep), and names the operation that failed.
func (fs *FS) setAttrs(i *inodestore.Inode, h *inodestore.Handle, pfd int, in *fuse.SetAttrIn, uid, gid int) (string, error) {
	if mode, ok := in.GetMode(); ok {
		var err error
		if h != nil {
			err = unix.Fchmod(h.FD, mode)
		} else {
			// chmod needs a real descriptor or a path; the magic link
			// reaches the object itself.
			err = rawsys.Fchmodat(fs.procFD, strconv.Itoa(pfd), mode)
		}
		if err != nil {
			return "chmod", err
		}
	}
	if uid != -1 || gid != -1 {
		if err := rawsys.Fchownat(pfd, "", uid, gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return "chown", err
		}
	}
	if size, ok := in.GetSize(); ok {
		kill := fs.killpriv.Load() && in.Valid&fuse.FATTR_KILL_SUIDGID != 0
		if err := fs.truncate(i, h, int64(size), kill); err != nil {
			return "truncate", err
		}
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
			ts[0].Nsec = unix.UTIME_NOW
		} else if in.Valid&fuse.FATTR_ATIME != 0 {
			ts[0] = unix.Timespec{Sec: int64(in.Atime), Nsec: int64(in.Atimensec)}
		}
		if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
			ts[1].Nsec = unix.UTIME_NOW
		} else if in.Valid&fuse.FATTR_MTIME != 0 {
			ts[1] = unix.Timespec{Sec: int64(in.Mtime), Nsec: int64(in.Mtimensec)}
		}
		// AT_EMPTY_PATH works on O_PATH descriptors and on symlinks
		// themselves, so no handle or magic link is needed.
		if err := rawsys.UtimesNanoAt(pfd, "", ts[:], unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return "utimens", err
		}
	}
	return "", nil
}

// truncate sets the size through the handle when the guest gave one, else
// through a descriptor opened for writing.
func (fs *FS) truncate(i *inodestore.Inode, h *inodestore.Handle, size int64, kill bool) error {
	if size < 0 {
		return unix.EINVAL
	}
	fd := -1
	if h != nil {
		fd = h.FD
	} else {
		if i.IsDir() {
			return unix.EISDIR
		}
		if !i.IsRegular() {
			return unix.EINVAL
		}
		var err error
		if fd, err = fs.store.Open(i, unix.O_WRONLY|unix.O_NONBLOCK); err != nil {
			return err
		}
		defer rawsys.Close(fd)
	}
	return fs.maybeKillPriv(kill, func() error { return rawsys.Ftruncate(fd, size) })
}

// Readlink reads the target of a symlink.
func (fs *FS) Readlink(r *fuseproto.Request, dst []byte) (int, syscall.Errno) {
	i, errno := fs.inode(r.Node())
	if errno != 0 {
		return 0, errno
	}
	defer fs.put(i)
	if !i.IsSymlink() {
		return 0, syscall.EINVAL
	}
	pfd, err := fs.store.PathFD(i)
	if err != nil {
		return 0, fs.errno("readlink", err)
	}
	defer pfd.Close()
	n, err := rawsys.Readlinkat(pfd.FD, "", dst)
	if err != nil {
		return 0, fs.errno("readlink", err)
	}
	if n == len(dst) {
		return 0, syscall.ENAMETOOLONG // possibly cut short
	}
	return n, 0
}

// Access checks the caller's permission the way virtiofsd does: against the
// mode bits and owner of the object, with root allowed everything but
// executing a file nobody may execute. The request's uid and gid are the
// real ones (ACCESS is the one call that carries real ids).
func (fs *FS) Access(r *fuseproto.Request, in *fuse.AccessIn) syscall.Errno {
	i, errno := fs.inode(r.Node())
	if errno != 0 {
		return errno
	}
	defer fs.put(i)
	pfd, err := fs.store.PathFD(i)
	if err != nil {
		return fs.errno("access", err)
	}
	defer pfd.Close()
	var stx unix.Statx_t
	if err := statxFD(pfd.FD, &stx); err != nil {
		return fs.errno("access", err)
	}
	mask := in.Mask
	if mask == unix.F_OK {
		return 0
	}
	if mask&unix.W_OK != 0 && fs.opts.Readonly {
		return syscall.EROFS
	}
	mode := uint32(stx.Mode)
	// Compared in the guest's id space: the owner as the guest sees it
	// against the caller's guest ids.
	uid, gid := r.Header.Uid, r.Header.Gid
	stx.Uid = uint32(fs.opts.UIDMap.ToGuest(idmap.HostUID(stx.Uid)))
	stx.Gid = uint32(fs.opts.GIDMap.ToGuest(idmap.HostGID(stx.Gid)))
	if uid == 0 {
		if mask&unix.X_OK != 0 && mode&0o111 == 0 && mode&unix.S_IFMT != unix.S_IFDIR {
			return syscall.EACCES
		}
		return 0
	}
	var bits uint32
	switch {
	case uid == stx.Uid:
		bits = mode >> 6
	case gid == stx.Gid:
		bits = mode >> 3
	default:
		bits = mode
	}
	if mask&^(bits&7) != 0 {
		return syscall.EACCES
	}
	return 0
}

// StatFs describes the filesystem holding the node.
func (fs *FS) StatFs(r *fuseproto.Request, out *fuse.StatfsOut) syscall.Errno {
	i, errno := fs.inode(r.Node())
	if errno != 0 {
		return errno
	}
	defer fs.put(i)
	pfd, err := fs.store.PathFD(i)
	if err != nil {
		return fs.errno("statfs", err)
	}
	defer pfd.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(pfd.FD, &st); err != nil {
		return fs.errno("statfs", err)
	}
	*out = fuse.StatfsOut{
		Blocks:  st.Blocks,
		Bfree:   st.Bfree,
		Bavail:  st.Bavail,
		Files:   st.Files,
		Ffree:   st.Ffree,
		Bsize:   uint32(st.Bsize),
		NameLen: uint32(st.Namelen),
		Frsize:  uint32(st.Frsize),
	}
	return 0
}

// SyncFS flushes the filesystem holding the shared directory.
func (fs *FS) SyncFS(r *fuseproto.Request) syscall.Errno {
	fd, err := fs.store.Open(fs.store.Root(), unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fs.errno("syncfs", err)
	}
	defer rawsys.Close(fd)
	return fs.errno("syncfs", unix.Syncfs(fd))
}
