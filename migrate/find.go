package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Missing is an inode a destination would not find.
type Missing struct {
	ID uint64
	// Where is the inode's path or a description of its file handle.
	Where string
	Err   error
	// LostAtSource says the source could no longer reach it either
	// (Inode.LostAtSource): a destination installs it as lost without
	// failing the migration.
	LostAtSource bool
}

// Verify reports the inodes of s that a destination serving the shared
// directory open at rootFD (opened O_RDONLY|O_DIRECTORY: open_by_handle_at
// refuses an O_PATH descriptor for the mount) would not find, or would
// find as an object of another type. Paths are resolved beneath rootFD
// without following any symlink, as the destination resolves them; file
// handles are opened through rootFD's mount.
//
// In find-paths mode the inodes are checked parents first: what is below a
// directory that is missing is missing too, without its path being built
// or opened (as a destination loses it with its directory), so that a
// deep state costs time and memory linear in its size.
func Verify(s *State, rootFD int) []Missing {
	var shown map[uint64]string
	var byID map[uint64]int
	order := make([]int, 0, len(s.Inodes))
	if s.Mode == FindPaths {
		shown = s.Paths()
		byID = make(map[uint64]int, len(s.Inodes))
		for k := range s.Inodes {
			byID[s.Inodes[k].ID] = k
		}
		order = parentsFirst(s.Inodes, byID)
	} else {
		for k := range s.Inodes {
			order = append(order, k)
		}
	}
	found := make([]bool, len(s.Inodes))
	errs := make([]*Missing, len(s.Inodes))
	for _, k := range order {
		i := &s.Inodes[k]
		if i.ID == RootID {
			found[k] = true
			continue
		}
		miss := func(err error) { errs[k] = &Missing{ID: i.ID, Where: Describe(i, shown), Err: err} }
		if i.Invalid != "" {
			miss(fmt.Errorf("the source could not describe it: %s", i.Invalid))
			errs[k].LostAtSource = i.LostAtSource()
			continue
		}
		var fd int
		var err error
		switch s.Mode {
		case FindPaths:
			if p, ok := byID[i.Parent]; !ok || !found[p] {
				miss(fmt.Errorf("below missing directory %d", i.Parent))
				continue
			}
			// Its parent was found, so its path is that of a
			// directory the host has: built for this inode alone,
			// up to PATH_MAX, beyond which it cannot be opened.
			p, tooLong, ok := pathUpTo(s.Inodes, byID, k, maxPathLen)
			if tooLong {
				miss(fmt.Errorf("path longer than %d bytes: cannot be checked by path", maxPathLen))
				continue
			}
			if !ok {
				miss(fmt.Errorf("no path: a parent is missing"))
				continue
			}
			fd, err = OpenPath(rootFD, p)
		case FileHandles:
			fd, err = OpenHandleBeneath(rootFD, i.Handle)
		}
		if err != nil {
			miss(err)
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		switch {
		case err != nil:
		case st.Mode&unix.S_IFMT != i.Type:
			err = fmt.Errorf("found a %s, the guest knows a %s", TypeName(st.Mode&unix.S_IFMT), TypeName(i.Type))
		case s.Mode == FindPaths && i.Handle != nil:
			err = CheckHandle(fd, i.Handle)
		}
		unix.Close(fd)
		if err != nil {
			miss(err)
			continue
		}
		found[k] = true
	}
	var missing []Missing
	for _, m := range errs {
		if m != nil {
			missing = append(missing, *m)
		}
	}
	return missing // in id order, as s.Inodes
}

// ErrOtherObject is CheckHandle's verdict on an object that is not the
// source's: a path that now leads to another object (a file replaced by a
// new one of the same name) would otherwise go unnoticed.
var ErrOtherObject = errors.New("the path leads to a different object than the source's (file handles differ)")

// CheckHandle checks that the object open at fd (any kind of descriptor)
// has file handle h, for find-paths states that carry handles
// (--migration-verify-handles). Only the type and bytes are compared: the
// mount id is the source's and means nothing on another host. A mismatch
// is ErrOtherObject; a handle that cannot be made is another error.
func CheckHandle(fd int, h *FileHandle) error {
	got, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("cannot verify the file handle: name_to_handle_at: %w", err)
	}
	if got.Type() != h.Type || !bytes.Equal(got.Bytes(), h.Bytes) {
		return ErrOtherObject
	}
	return nil
}

// Describe names how inode i is found: its path (from paths, as
// State.Paths gives them, cut when long) or its file handle.
func Describe(i *Inode, paths map[uint64]string) string {
	// A path, when there is one, says more to a reader than a handle: a
	// find-paths inode may carry both (--migration-verify-handles).
	p, ok := paths[i.ID]
	switch {
	case i.ID == RootID:
		return "/"
	case i.Unlinked:
		return fmt.Sprintf("unlinked, kept as /%s", i.Name)
	case ok:
		return "/" + p
	case i.Name != "":
		return fmt.Sprintf("parent %d name %q", i.Parent, i.Name)
	case i.Handle != nil:
		return fmt.Sprintf("handle mount=%d type=%d %x", i.Handle.MountID, i.Handle.Type, i.Handle.Bytes)
	}
	return "no location"
}

// OpenPath opens path, relative to the directory open at rootFD, as an
// O_PATH descriptor, without following symlinks and without leaving
// rootFD.
func OpenPath(rootFD int, path string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(rootFD, path, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", path, err)
		}
		return fd, nil
	}
}

// ErrOutsideShare is OpenHandleBeneath's verdict on a file handle whose
// object it cannot show to have a name beneath the shared directory.
var ErrOutsideShare = errors.New("the file handle's object has no name beneath the shared directory that leads to it")

// OpenHandleBeneath opens file handle h through the mount of the shared
// directory open at rootFD (O_RDONLY, as OpenHandle wants), as an O_PATH
// descriptor, and admits only an object with a name beneath that
// directory.
//
// A file handle names any object of its file system, and the file system
// the shared directory is on usually holds more than the shared directory:
// a state from another host could name a directory beside it, and serving
// that would let the guest out. So the handle is not trusted for where its
// object is: the kernel says where it placed the object (its
// /proc/self/fd link), and that path, resolved again beneath rootFD as a
// guest's names are (no symlinks, no "..", no magic links), must lead to
// the very same object. A handle of an object outside gives a path
// outside, or one that resolves to something else, and is refused with
// ErrOutsideShare.
//
// The kernel knows a directory's place always, a non-directory's only when
// it is in the dentry cache or the handle is connectable (it carries the
// parent: name_to_handle_at's AT_HANDLE_CONNECTABLE, which the source uses
// for non-directories, and which the kernel decodes only beneath the mount
// descriptor given). A non-directory the kernel cannot place is refused
// too: failing closed is the price of a plain handle.
func OpenHandleBeneath(rootFD int, h *FileHandle) (int, error) {
	fd, err := OpenHandle(rootFD, h)
	if err != nil {
		return -1, err
	}
	if err := checkBeneath(rootFD, fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// checkBeneath reports whether the object open at fd has a name beneath
// the directory open at rootFD that leads to it (OpenHandleBeneath).
func checkBeneath(rootFD, fd int) error {
	var buf [2 * unix.PathMax]byte
	root, err := fdLink(rootFD, buf[:unix.PathMax])
	if err != nil {
		return fmt.Errorf("the shared directory's path: %w", err)
	}
	obj, err := fdLink(fd, buf[unix.PathMax:])
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOutsideShare, err)
	}
	var rel string
	switch {
	case obj == root:
		rel = "."
	case root == "/":
		rel = obj[1:]
	case strings.HasPrefix(obj, root) && obj[len(root)] == '/':
		rel = obj[len(root)+1:]
	default:
		return fmt.Errorf("%w (the kernel places it at %q)", ErrOutsideShare, obj)
	}
	var want unix.Stat_t
	if err := unix.Fstat(fd, &want); err != nil {
		return fmt.Errorf("stat the object of the file handle: %w", err)
	}
	pfd := rootFD
	if rel != "." {
		if pfd, err = OpenPath(rootFD, rel); err != nil {
			return fmt.Errorf("%w: %w", ErrOutsideShare, err)
		}
		defer unix.Close(pfd)
	}
	var got unix.Stat_t
	if err := unix.Fstat(pfd, &got); err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	if got.Dev != want.Dev || got.Ino != want.Ino {
		return fmt.Errorf("%w (%s leads to another object)", ErrOutsideShare, rel)
	}
	return nil
}

// fdLink reads the /proc/self/fd link of fd into buf: the path of the
// object as the kernel knows it. A path that fills buf may be cut and is
// refused.
func fdLink(fd int, buf []byte) (string, error) {
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf)
	if err != nil {
		return "", fmt.Errorf("readlink /proc/self/fd: %w", err)
	}
	if n >= len(buf) {
		return "", fmt.Errorf("path longer than %d bytes", len(buf)-1)
	}
	if n == 0 || buf[0] != '/' {
		return "", fmt.Errorf("not a path: %q", buf[:n])
	}
	return string(buf[:n]), nil
}

// OpenHandle opens a file handle through the mount of mountFD (not an
// O_PATH descriptor) as an O_PATH descriptor. It needs CAP_DAC_READ_SEARCH.
// It does not check where the object is: OpenHandleBeneath does.
func OpenHandle(mountFD int, h *FileHandle) (int, error) {
	if !validHandle(h) {
		return -1, fmt.Errorf("no valid file handle")
	}
	for {
		fd, err := unix.OpenByHandleAt(mountFD, unix.NewFileHandle(h.Type, h.Bytes), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("open file handle: %w", err)
		}
		return fd, nil
	}
}

// TypeName names the file type in the S_IFMT bits t.
func TypeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("type %o", t)
}
