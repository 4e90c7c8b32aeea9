package passthrough

import (
	"errors"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// The POSIX ACL attributes. Without --posix-acl they are refused, as in
// virtiofsd: the guest would otherwise store ACLs that nothing enforces
// consistently (the guest checks permissions from the mode bits alone).
const (
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"
)

func isACLName(name string) bool { return name == aclAccess || name == aclDefault }

// hostXattrName maps the guest's attribute name to the host's: ACL names
// are refused unless ACLs were negotiated, then the --xattrmap rules apply.
func (fs *FS) hostXattrName(guest string) (string, syscall.Errno) {
	if !fs.posixACL.Load() && isACLName(guest) {
		return "", syscall.EOPNOTSUPP
	}
	if fs.opts.XattrMap == nil {
		return guest, 0
	}
	host, err := fs.opts.XattrMap.ToHost(guest)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return "", errno
		}
		return "", syscall.EPERM
	}
	return host, 0
}

// guestXattrList turns the host's listxattr result into the guest's, in
// place: mapped by --xattrmap, ACL names dropped unless ACLs were
// negotiated.
func (fs *FS) guestXattrList(list []byte) ([]byte, error) {
	if fs.opts.XattrMap != nil {
		var err error
		if list, err = fs.opts.XattrMap.FilterList(list); err != nil {
			return nil, err
		}
	}
	if fs.posixACL.Load() {
		return list, nil
	}
	out := list[:0]
	for rest := list; len(rest) > 0; {
		end := 0
		for end < len(rest) && rest[end] != 0 {
			end++
		}
		name := rest[:end]
		rest = rest[min(end+1, len(rest)):]
		if len(name) == 0 || isACLName(string(name)) {
			continue
		}
		// out never overtakes the name being read: copy is a memmove.
		out = append(out, name...)
		out = append(out, 0)
	}
	return out, nil
}

// setXattrFD sets attribute name on the object open at fd, whatever kind
// of descriptor it is (O_PATH included), through its /proc/self/fd link.
func (fs *FS) setXattrFD(fd int, name string, value []byte, flags uint32) error {
	return fs.xattrFD(fd,
		func(link []byte) error { return setxattrat(fs.procFD, link, cstr(name), value, flags) },
		func(open int) error { return rawsys.Fsetxattr(open, name, value, int(flags)) })
}

// removeXattrFD removes attribute name from the object open at fd, like
// setXattrFD.
func (fs *FS) removeXattrFD(fd int, name string) error {
	return fs.xattrFD(fd,
		func(link []byte) error { return removexattrat(fs.procFD, link, cstr(name)) },
		func(open int) error { return rawsys.Fremovexattr(open, name) })
}

// xattrFD runs the *xattrat form of an attribute call on the object open at
// fd, or, on kernels without it, the f*xattr form on a descriptor opened
// for it: regular files and directories only, as in xattrTarget (opening a
// device node would reach a device).
func (fs *FS) xattrFD(fd int, at func(link []byte) error, fallback func(open int) error) error {
	if !noXattrat.Load() {
		err := at(append(strconv.AppendInt(make([]byte, 0, 12), int64(fd), 10), 0))
		if err != unix.ENOSYS {
			return err
		}
		noXattrat.Store(true)
	}
	var stx unix.Statx_t
	if err := statxFD(fd, &stx); err != nil {
		return err
	}
	if t := uint32(stx.Mode) & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
		return unix.EOPNOTSUPP
	}
	open, err := rawsys.Openat(fs.procFD, strconv.Itoa(fd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer rawsys.Close(open)
	return fallback(open)
}

// clearCapability removes the guest's security.capability from the object
// open at fd when --xattrmap stores it under another host name: the host
// kernel drops security.capability itself on write, truncate and chown,
// but knows nothing of the mapped name.
func (fs *FS) clearCapability(fd int) error {
	if fs.capabilityName == "" {
		return nil
	}
	err := fs.removeXattrFD(fd, fs.capabilityName)
	if err == unix.ENODATA || err == unix.EOPNOTSUPP {
		return nil
	}
	return err
}

// setSecurityContext gives the node open at fd (any kind of descriptor) the
// security label the guest's LSM chose for it (FUSE_SECURITY_CTX), under
// the host name --xattrmap gives it.
func (fs *FS) setSecurityContext(r *fuseproto.Request, fd int) syscall.Errno {
	if !fs.secLabel.Load() {
		return 0
	}
	for _, ctx := range r.Ext.SecCtx {
		name, errno := fs.hostXattrName(ctx.Name)
		if errno != 0 {
			return errno
		}
		if err := fs.setXattrFD(fd, name, ctx.Value, 0); err != nil {
			return fs.errno("set security context", err)
		}
	}
	return 0
}
