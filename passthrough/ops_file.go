package passthrough

import (
	"math"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// hostOpenFlags turns the guest's open flags into the flags the host file is
// opened with.
func (fs *FS) hostOpenFlags(guest uint32) int {
	flags := int(guest)
	// Creation is CREATE's and TMPFILE's business, and the daemon has no
	// controlling terminal to acquire.
	flags &^= unix.O_CREAT | unix.O_EXCL | unix.O_NOCTTY | unix.O_TMPFILE
	// Appends are made per write (RWF_APPEND) so that a file the guest
	// mmaps, or whose O_APPEND it clears with fcntl, still works.
	flags &^= unix.O_APPEND
	if !fs.opts.PreserveNoatime {
		flags &^= unix.O_NOATIME
	}
	if fs.writeback.Load() && flags&unix.O_ACCMODE == unix.O_WRONLY {
		// With the writeback cache the kernel reads pages of files the
		// program opened write-only.
		flags = flags&^unix.O_ACCMODE | unix.O_RDWR
	}
	if !fs.opts.AllowDirectIO {
		flags &^= unix.O_DIRECT
	}
	return flags
}

// openFlags are the FOPEN_* flags that carry the cache policy.
func (fs *FS) openFlags(dir bool) uint32 {
	switch fs.opts.Cache {
	case CacheNever:
		if !dir {
			return fuse.FOPEN_DIRECT_IO
		}
	case CacheMetadata:
		if !dir {
			return fuse.FOPEN_DIRECT_IO
		}
		return fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	case CacheAlways:
		if dir {
			return fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
		}
		return fuse.FOPEN_KEEP_CACHE
	}
	return 0
}

func modifies(flags uint32) bool {
	return flags&unix.O_ACCMODE != unix.O_RDONLY || flags&(unix.O_TRUNC|unix.O_CREAT) != 0
}

// Open opens a file and returns a handle.
func (fs *FS) Open(r *fuseproto.Request, in *fuse.OpenIn, out *fuse.OpenOut) syscall.Errno {
	if fs.opts.Readonly && modifies(in.Flags) {
		return syscall.EROFS
	}
	i, errno := fs.inode(r.Node())
	if errno != 0 {
		return errno
	}
	defer fs.put(i)
	kill := fs.killpriv.Load() && in.Mode&fuse.OPEN_KILL_SUIDGID != 0
	return fs.openHandle(i, fs.hostOpenFlags(in.Flags), in.Flags, kill, out)
}

func (fs *FS) openHandle(i *inodestore.Inode, flags int, guestFlags uint32, kill bool, out *fuse.OpenOut) syscall.Errno {
	if err := fs.store.ReserveFD(); err != nil {
		return fs.errno("open", err)
	}
	var fd int
	err := fs.maybeKillPriv(kill, func() (err error) {
		fd, err = fs.store.Open(i, flags)
		return err
	})
	if err != nil {
		fs.store.UnreserveFD()
		return fs.errno("open", err)
	}
	if flags&unix.O_TRUNC != 0 {
		if err := fs.clearCapability(fd); err != nil {
			rawsys.Close(fd)
			fs.store.UnreserveFD()
			return fs.errno("open", err)
		}
	}
	fh, err := fs.store.AddHandle(i, fd, flags, guestFlags)
	if err != nil {
		rawsys.Close(fd)
		fs.store.UnreserveFD()
		return fs.errno("open", err)
	}
	out.Fh = fh
	out.OpenFlags = fs.openFlags(flags&unix.O_DIRECTORY != 0)
	return 0
}

// Create creates and opens a file.
func (fs *FS) Create(r *fuseproto.Request, in *fuse.CreateIn, name string, out *fuse.CreateOut) syscall.Errno {
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
	flags := fs.hostOpenFlags(in.Flags) | unix.O_CREAT
	if in.Flags&unix.O_EXCL != 0 {
		flags |= unix.O_EXCL
	}
	// The file may exist already (CREATE without O_EXCL opens it); only
	// a file this call made is labelled, or removed when that fails.
	return fs.createHandle(r, in, flags, out, func() (int, bool, error) {
		fd, err := openBeneath(pfd.FD, name, flags|unix.O_EXCL, in.Mode)
		if err == unix.EEXIST && flags&unix.O_EXCL == 0 {
			fd, err = openBeneath(pfd.FD, name, flags&^unix.O_CREAT, 0)
			return fd, false, err
		}
		return fd, true, err
	}, func() { rawsys.Unlinkat(pfd.FD, name, 0) })
}

// Tmpfile creates an unnamed file in the directory, as open(O_TMPFILE).
func (fs *FS) Tmpfile(r *fuseproto.Request, in *fuse.CreateIn, out *fuse.CreateOut) syscall.Errno {
	if fs.opts.Readonly {
		return syscall.EROFS
	}
	_, pfd, done, errno := fs.parentDir(r.Node())
	if errno != 0 {
		return errno
	}
	defer done()
	flags := fs.hostOpenFlags(in.Flags) | unix.O_TMPFILE
	if flags&unix.O_ACCMODE == unix.O_RDONLY {
		return syscall.EINVAL // O_TMPFILE needs write access
	}
	errno = fs.createHandle(r, in, flags, out, func() (int, bool, error) {
		fd, err := openBeneath(pfd.FD, ".", flags, in.Mode)
		return fd, true, err
	}, func() {})
	if errno == 0 {
		fs.adoptTmpfile(fuseproto.NodeID(out.NodeId), out.Fh)
	}
	return errno
}

// createHandle runs create, which returns a new descriptor opened with
// flags and whether it made a new file, as the request's caller, and
// records both the inode and the handle. A new file gets the guest's
// security label, and undo removes it if that fails.
func (fs *FS) createHandle(r *fuseproto.Request, in *fuse.CreateIn, flags int, out *fuse.CreateOut,
	create func() (fd int, made bool, err error), undo func()) syscall.Errno {
	c, errno := fs.hostCaller(r)
	if errno != 0 {
		return errno
	}
	if err := fs.store.ReserveFD(); err != nil {
		return fs.errno("create", err)
	}
	fd, made := -1, false
	err := fs.asCaller(c, in.Umask, fs.posixACL.Load(), func() (err error) {
		fd, made, err = create()
		return err
	})
	if err != nil {
		fs.store.UnreserveFD()
		return fs.errno("create", err)
	}
	if made {
		if errno := fs.setSecurityContext(r, fd); errno != 0 {
			rawsys.Close(fd)
			undo()
			fs.store.UnreserveFD()
			return errno
		}
	} else if flags&unix.O_TRUNC != 0 {
		if err := fs.clearCapability(fd); err != nil {
			rawsys.Close(fd)
			fs.store.UnreserveFD()
			return fs.errno("create", err)
		}
	}
	i, errno := fs.insertOpened(fd, &out.EntryOut)
	if errno != 0 {
		// No inode, so the guest is not told of the file (ENFILE
		// when the node ids are spent, EMFILE past the budget).
		rawsys.Close(fd)
		if made {
			undo()
		}
		fs.store.UnreserveFD()
		return errno
	}
	defer fs.put(i)
	fh, err := fs.store.AddHandle(i, fd, flags, in.Flags)
	if err != nil {
		// The guest is not told of the inode: take back its lookup,
		// and the file if this made it.
		fs.store.Forget(i.ID, 1)
		rawsys.Close(fd)
		if made {
			undo()
		}
		fs.store.UnreserveFD()
		return fs.errno("create", err)
	}
	out.Fh = fh
	out.OpenFlags = fs.openFlags(false)
	return 0
}

// handle fetches the open handle fh of the request's node: call
// fs.store.PutHandle when done.
func (fs *FS) handle(r *fuseproto.Request, fh uint64) (*inodestore.Handle, syscall.Errno) {
	h, err := fs.store.GetHandle(fh, r.Node())
	if err != nil {
		return nil, fs.errno("handle", err)
	}
	return h, 0
}

// Read reads from an open file straight into the reply buffers.
func (fs *FS) Read(r *fuseproto.Request, in *fuse.ReadIn, dst [][]byte) (int, syscall.Errno) {
	h, errno := fs.handle(r, in.Fh)
	if errno != 0 {
		return 0, errno
	}
	defer fs.store.PutHandle(h)
	if in.Offset > math.MaxInt64 {
		return 0, syscall.EINVAL
	}
	n, err := preadvFull(h.FD, dst, int64(in.Offset))
	if err != nil {
		return 0, fs.errno("read", err)
	}
	return n, 0
}

// Write writes the request's data buffers to an open file.
func (fs *FS) Write(r *fuseproto.Request, in *fuse.WriteIn, src [][]byte) (uint32, syscall.Errno) {
	if fs.opts.Readonly {
		return 0, syscall.EROFS
	}
	h, errno := fs.handle(r, in.Fh)
	if errno != 0 {
		return 0, errno
	}
	defer fs.store.PutHandle(h)
	if in.Offset > math.MaxInt64 {
		return 0, syscall.EINVAL
	}
	// A write from the page cache (writeback, mmap) comes with its offset
	// right; a direct one to an O_APPEND file must land at the end as the
	// host file is now, which may have grown behind the guest's back.
	var rwf int
	if h.GuestFlags&unix.O_APPEND != 0 && in.WriteFlags&fuse.WRITE_CACHE == 0 {
		rwf = unix.RWF_APPEND
	}
	kill := fs.killpriv.Load() && in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0
	if err := fs.clearCapability(h.FD); err != nil {
		return 0, fs.errno("write", err)
	}
	var n int
	err := fs.maybeKillPriv(kill, func() (err error) {
		n, err = pwritevFull(h.FD, src, int64(in.Offset), rwf)
		return err
	})
	if err != nil {
		return 0, fs.errno("write", err)
	}
	return uint32(n), 0
}

// Release closes a file handle.
func (fs *FS) Release(r *fuseproto.Request, in *fuse.ReleaseIn) {
	key, err := fs.store.RemoveHandle(in.Fh, r.Node())
	if err != nil {
		fs.log.Debug("release of unknown handle", "fh", in.Fh, "node", r.Node())
		return
	}
	fs.released(key)
}

// Flush is called on every close(2) of the guest file: closing a duplicate
// of the host descriptor gives the host the same close-time behaviour (NFS
// flushes its data and reports write errors, POSIX locks are dropped).
func (fs *FS) Flush(r *fuseproto.Request, in *fuse.FlushIn) syscall.Errno {
	h, errno := fs.handle(r, in.Fh)
	if errno != 0 {
		return errno
	}
	defer fs.store.PutHandle(h)
	dup, err := rawsys.DupCloexec(h.FD)
	if err != nil {
		return fs.errno("flush", err)
	}
	return fs.errno("flush", rawsys.Close(dup))
}

// fsyncDataOnly is FUSE_FSYNC_FDATASYNC.
const fsyncDataOnly = 1

// Fsync flushes a file to stable storage.
func (fs *FS) Fsync(r *fuseproto.Request, in *fuse.FsyncIn) syscall.Errno {
	h, errno := fs.handle(r, in.Fh)
	if errno != 0 {
		return errno
	}
	defer fs.store.PutHandle(h)
	if in.FsyncFlags&fsyncDataOnly != 0 {
		return fs.errno("fdatasync", unix.Fdatasync(h.FD))
	}
	return fs.errno("fsync", unix.Fsync(h.FD))
}

// Fallocate allocates, punches or zeroes a range of an open file.
func (fs *FS) Fallocate(r *fuseproto.Request, in *fuse.FallocateIn) syscall.Errno {
	if fs.opts.Readonly {
		return syscall.EROFS
	}
	h, errno := fs.handle(r, in.Fh)
	if errno != 0 {
		return errno
	}
	defer fs.store.PutHandle(h)
	if in.Offset > math.MaxInt64 || in.Length > math.MaxInt64 {
		return syscall.EINVAL
	}
	return fs.errno("fallocate", unix.Fallocate(h.FD, in.Mode, int64(in.Offset), int64(in.Length)))
}

// Lseek finds data or holes (the kernel handles the other whences itself).
func (fs *FS) Lseek(r *fuseproto.Request, in *fuse.LseekIn, out *fuse.LseekOut) syscall.Errno {
	if in.Whence != unix.SEEK_DATA && in.Whence != unix.SEEK_HOLE {
		return syscall.EINVAL
	}
	h, errno := fs.handle(r, in.Fh)
	if errno != 0 {
		return errno
	}
	defer fs.store.PutHandle(h)
	if in.Offset > math.MaxInt64 {
		return syscall.ENXIO
	}
	// The descriptor's position is never used for data (reads and writes
	// are positional), so moving it here disturbs nothing.
	off, err := rawsys.Seek(h.FD, int64(in.Offset), int(in.Whence))
	if err != nil {
		return fs.errno("lseek", err)
	}
	out.Offset = uint64(off)
	return 0
}

// maxCopy bounds one COPY_FILE_RANGE: the reply carries a 32-bit count.
const maxCopy = 1 << 30

// CopyFileRange copies between two open files on the host side.
func (fs *FS) CopyFileRange(r *fuseproto.Request, in *fuse.CopyFileRangeIn) (uint32, syscall.Errno) {
	if fs.opts.Readonly {
		return 0, syscall.EROFS
	}
	src, errno := fs.handle(r, in.FhIn)
	if errno != 0 {
		return 0, errno
	}
	defer fs.store.PutHandle(src)
	dst, err := fs.store.GetHandle(in.FhOut, fuseproto.NodeID(in.NodeIdOut))
	if err != nil {
		return 0, fs.errno("copy_file_range", err)
	}
	defer fs.store.PutHandle(dst)
	if in.OffIn > math.MaxInt64 || in.OffOut > math.MaxInt64 || in.Flags != 0 {
		return 0, syscall.EINVAL
	}
	offIn, offOut := int64(in.OffIn), int64(in.OffOut)
	n, err := unix.CopyFileRange(src.FD, &offIn, dst.FD, &offOut, int(min(in.Len, maxCopy)), 0)
	if err != nil {
		return 0, fs.errno("copy_file_range", err)
	}
	return uint32(n), 0
}
