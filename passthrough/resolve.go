package passthrough

import (
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// noOpenat2 is set once openat2 turned out to be missing (Linux < 5.6).
var noOpenat2 atomic.Bool

// openBeneath opens name, a single path component, in the directory open at
// dirFD without following a symlink anywhere and without leaving dirFD.
//
// The request layer already refuses names with '/' and, where an entry is
// created, "." and "..": openat2's RESOLVE_BENEATH is the second fence, in
// case that one someday has a hole. Without openat2, O_NOFOLLOW still keeps
// the last (and only) component from being followed.
func openBeneath(dirFD int, name string, flags int, mode uint32) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !noOpenat2.Load() {
		how := unix.OpenHow{
			Flags:   uint64(flags),
			Mode:    uint64(mode & 0o7777), // CREATE's mode carries S_IFREG, which openat2 refuses
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
		if flags&(unix.O_CREAT|unix.O_TMPFILE) == 0 {
			how.Mode = 0 // openat2 refuses a mode without O_CREAT/O_TMPFILE
		}
		for {
			fd, err := rawsys.Openat2(dirFD, name, &how)
			switch err {
			case unix.EINTR, unix.EAGAIN:
				// EAGAIN: a concurrent rename made the kernel give up
				// the lookup; trying again is what it asks for.
				continue
			case unix.ENOSYS:
				noOpenat2.Store(true)
			case unix.EXDEV:
				// RESOLVE_BENEATH refused to leave dirFD.
				return -1, unix.EACCES
			default:
				return fd, err
			}
			break
		}
	}
	if name == ".." || name == "" || strings.ContainsAny(name, "/\x00") {
		return -1, unix.EACCES
	}
	for {
		fd, err := rawsys.Openat(dirFD, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// reopenPath returns a new O_PATH descriptor of the object open at fd,
// through /proc/self/fd, so it is the same object whatever its name is now.
func (fs *FS) reopenPath(fd int) (int, error) {
	return rawsys.Openat(fs.procFD, strconv.Itoa(fd), unix.O_PATH|unix.O_CLOEXEC, 0)
}

// maxDepth bounds the walk up in isBeneathRoot: deeper than any real tree,
// small enough that a loop of bind mounts cannot keep the daemon busy.
const maxDepth = 4096

// openParent opens ".." of the directory open at dirFD and checks that it is
// still under the shared directory. That can fail when the host moved the
// directory out of the shared directory while the guest held it.
func (fs *FS) openParent(dirFD int) (int, error) {
	fd, err := rawsys.Openat(dirFD, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	ok, err := fs.isBeneathRoot(fd)
	if err != nil || !ok {
		rawsys.Close(fd)
		if err == nil {
			err = unix.EACCES
		}
		return -1, err
	}
	return fd, nil
}

// isBeneathRoot reports whether the directory open at fd is the shared
// directory or below it, by walking ".." up to either the shared directory
// or the top of the host's tree.
func (fs *FS) isBeneathRoot(fd int) (bool, error) {
	root := fs.store.Root().Key
	var stx unix.Statx_t
	cur, err := unix.Dup(fd)
	if err != nil {
		return false, err
	}
	defer func() { rawsys.Close(cur) }()
	for depth := 0; depth < maxDepth; depth++ {
		if err := statxFD(cur, &stx); err != nil {
			return false, err
		}
		if unix.Mkdev(stx.Dev_major, stx.Dev_minor) == root.Dev && stx.Ino == root.Ino {
			return true, nil
		}
		up, err := rawsys.Openat(cur, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, err
		}
		var upx unix.Statx_t
		if err := statxFD(up, &upx); err != nil {
			rawsys.Close(up)
			return false, err
		}
		if upx.Ino == stx.Ino && upx.Dev_major == stx.Dev_major && upx.Dev_minor == stx.Dev_minor {
			rawsys.Close(up)
			return false, nil // reached "/" without meeting the shared directory
		}
		rawsys.Close(cur)
		cur = up
	}
	return false, nil
}

// validName is the passthrough's own check of a name that creates or
// removes an entry. The request layer checks the same; this is the second
// fence, because a hole in one fence must not be a way out.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\x00")
}
