package passthrough

import (
	"strconv"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// Extended attributes are read and written with the *xattrat system calls
// (Linux 6.13) relative to /proc/self/fd, following the magic link: that
// reaches the object itself, symlinks and device nodes included, without
// opening it and without a path. Older kernels lack them; there the
// attributes of regular files and directories go through an opened
// descriptor, and other file types get EOPNOTSUPP.

// System call numbers of the *xattrat family, the same on every
// architecture (they are newer than the unified numbering).
const (
	sysSetxattrat    = 463
	sysGetxattrat    = 464
	sysListxattrat   = 465
	sysRemovexattrat = 466
)

// xattrArgs is the kernel's struct xattr_args.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

var noXattrat atomic.Bool

// xattrTarget is an object whose extended attributes one request works
// on, either by magic-link name or by an opened descriptor.
type xattrTarget struct {
	fs      *FS
	pfd     inodestore.PathFD
	name    []byte // "N\x00", the O_PATH descriptor's name in /proc/self/fd
	openFD  int    // -1 unless the fallback opened the object
	regOrDi bool
}

func (fs *FS) xattrTarget(r *fuseproto.Request, write bool) (*xattrTarget, *inodestore.Inode, syscall.Errno) {
	if !fs.opts.Xattr {
		return nil, nil, syscall.ENOSYS // the kernel stops asking
	}
	if write && fs.opts.Readonly {
		return nil, nil, syscall.EROFS
	}
	i, errno := fs.inode(r.Node())
	if errno != 0 {
		return nil, nil, errno
	}
	pfd, err := fs.store.PathFD(i)
	if err != nil {
		fs.put(i)
		return nil, nil, fs.errno("xattr", err)
	}
	t := &xattrTarget{fs: fs, pfd: pfd, name: append(strconv.AppendInt(nil, int64(pfd.FD), 10), 0), openFD: -1,
		regOrDi: i.IsRegular() || i.IsDir()}
	if noXattrat.Load() {
		if errno := t.openFallback(i); errno != 0 {
			t.close()
			fs.put(i)
			return nil, nil, errno
		}
	}
	return t, i, 0
}

func (t *xattrTarget) openFallback(i *inodestore.Inode) syscall.Errno {
	if !t.regOrDi {
		return syscall.EOPNOTSUPP
	}
	fd, err := t.fs.store.Open(i, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return t.fs.errno("xattr open", err)
	}
	t.openFD = fd
	return 0
}

func (t *xattrTarget) close() {
	if t.openFD >= 0 {
		rawsys.Close(t.openFD)
	}
	t.pfd.Close()
}

// call runs the *xattrat form, switching to the fallback for good when the
// kernel does not have it.
func (t *xattrTarget) call(i *inodestore.Inode, at func() (int, error), fallback func(fd int) (int, error)) (int, error) {
	if t.openFD < 0 {
		n, err := at()
		if err != unix.ENOSYS {
			return n, err
		}
		noXattrat.Store(true)
		if errno := t.openFallback(i); errno != 0 {
			return 0, errno
		}
	}
	return fallback(t.openFD)
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func bufPtr(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// GetXAttr reads one attribute.
func (fs *FS) GetXAttr(r *fuseproto.Request, name string, dst []byte) (int, syscall.Errno) {
	t, i, errno := fs.xattrTarget(r, false)
	if errno != 0 {
		return 0, errno
	}
	defer fs.put(i)
	defer t.close()
	name, errno = fs.hostXattrName(name)
	if errno == syscall.EPERM {
		// A name the map refuses reads as absent, as in virtiofsd;
		// setting or removing it reports EPERM.
		return 0, syscall.ENODATA
	} else if errno != 0 {
		return 0, errno
	}
	cname := cstr(name)
	n, err := t.call(i, func() (int, error) {
		return getxattrat(fs.procFD, t.name, cname, dst)
	}, func(fd int) (int, error) { return rawsys.Fgetxattr(fd, name, dst) })
	if err != nil {
		return 0, fs.errno("getxattr", err)
	}
	return n, 0
}

// ListXAttr lists the attribute names.
func (fs *FS) ListXAttr(r *fuseproto.Request, dst []byte) (int, syscall.Errno) {
	t, i, errno := fs.xattrTarget(r, false)
	if errno != 0 {
		return 0, errno
	}
	defer fs.put(i)
	defer t.close()
	n, err := t.call(i, func() (int, error) {
		return listxattrat(fs.procFD, t.name, dst)
	}, func(fd int) (int, error) { return rawsys.Flistxattr(fd, dst) })
	if err != nil {
		return 0, fs.errno("listxattr", err)
	}
	if len(dst) == 0 {
		// A size probe: the host's size bounds the guest's list,
		// which mapping only shortens.
		return n, 0
	}
	list, err := fs.guestXattrList(dst[:n])
	if err != nil {
		return 0, fs.errno("listxattr", err)
	}
	return len(list), 0
}

// SetXAttr sets one attribute.
func (fs *FS) SetXAttr(r *fuseproto.Request, in *fuse.SetXAttrIn, name string, value []byte) syscall.Errno {
	t, i, errno := fs.xattrTarget(r, true)
	if errno != 0 {
		return errno
	}
	defer fs.put(i)
	defer t.close()
	name, errno = fs.hostXattrName(name)
	if errno != 0 {
		return errno
	}
	if name == aclAccess && fs.posixACL.Load() && in.SetXAttrFlags&fuse.SETXATTR_ACL_KILL_SGID != 0 {
		// The guest's kernel decided that setting this ACL clears the
		// setgid bit (the caller is not in the file's group); the host
		// kernel would not, as the daemon may do anything. Cleared
		// before the ACL is set: a chmod afterwards would rewrite the
		// ACL's mask entry.
		if errno := fs.clearSetgid(t.pfd.FD); errno != 0 {
			return errno
		}
	}
	cname := cstr(name)
	_, err := t.call(i, func() (int, error) {
		return 0, setxattrat(fs.procFD, t.name, cname, value, in.Flags)
	}, func(fd int) (int, error) { return 0, rawsys.Fsetxattr(fd, name, value, int(in.Flags)) })
	return fs.errno("setxattr", err)
}

// RemoveXAttr removes one attribute.
func (fs *FS) RemoveXAttr(r *fuseproto.Request, name string) syscall.Errno {
	t, i, errno := fs.xattrTarget(r, true)
	if errno != 0 {
		return errno
	}
	defer fs.put(i)
	defer t.close()
	name, errno = fs.hostXattrName(name)
	if errno != 0 {
		return errno
	}
	cname := cstr(name)
	_, err := t.call(i, func() (int, error) {
		return 0, removexattrat(fs.procFD, t.name, cname)
	}, func(fd int) (int, error) { return 0, rawsys.Fremovexattr(fd, name) })
	return fs.errno("removexattr", err)
}

// The *xattrat system calls on path (NUL-terminated) relative to dirFD,
// following it: with dirFD /proc/self/fd and path a descriptor's number,
// they reach the object the descriptor refers to. ENOSYS on kernels before
// 6.13.

func getxattrat(dirFD int, path, name, dst []byte) (int, error) {
	args := xattrArgs{value: uint64(bufPtr(dst)), size: uint32(len(dst))}
	r1, _, e := rawsys.Syscall6(sysGetxattrat, uintptr(dirFD), uintptr(unsafe.Pointer(&path[0])), 0,
		uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	return errnoResult(r1, e)
}

func listxattrat(dirFD int, path, dst []byte) (int, error) {
	r1, _, e := rawsys.Syscall6(sysListxattrat, uintptr(dirFD), uintptr(unsafe.Pointer(&path[0])), 0,
		bufPtr(dst), uintptr(len(dst)), 0)
	return errnoResult(r1, e)
}

func setxattrat(dirFD int, path, name, value []byte, flags uint32) error {
	args := xattrArgs{value: uint64(bufPtr(value)), size: uint32(len(value)), flags: flags}
	_, _, e := rawsys.Syscall6(sysSetxattrat, uintptr(dirFD), uintptr(unsafe.Pointer(&path[0])), 0,
		uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	return errnoErr(e)
}

func removexattrat(dirFD int, path, name []byte) error {
	_, _, e := rawsys.Syscall6(sysRemovexattrat, uintptr(dirFD), uintptr(unsafe.Pointer(&path[0])), 0,
		uintptr(unsafe.Pointer(&name[0])), 0, 0)
	return errnoErr(e)
}

func errnoResult(r1 uintptr, e syscall.Errno) (int, error) {
	if e != 0 {
		return 0, e
	}
	return int(r1), nil
}

func errnoErr(e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

// clearSetgid drops S_ISGID from the object open at fd (an O_PATH
// descriptor).
func (fs *FS) clearSetgid(fd int) syscall.Errno {
	var stx unix.Statx_t
	if err := statxFD(fd, &stx); err != nil {
		return fs.errno("clear setgid", err)
	}
	if stx.Mode&unix.S_ISGID == 0 {
		return 0
	}
	err := rawsys.Fchmodat(fs.procFD, strconv.Itoa(fd), uint32(stx.Mode)&0o7777&^unix.S_ISGID)
	return fs.errno("clear setgid", err)
}
