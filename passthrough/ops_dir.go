package passthrough

import (
	"encoding/binary"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// OpenDir opens a directory for reading.
func (fs *FS) OpenDir(r *fuseproto.Request, in *fuse.OpenIn, out *fuse.OpenOut) syscall.Errno {
	i, errno := fs.inode(r.Node())
	if errno != 0 {
		return errno
	}
	defer fs.put(i)
	if !i.IsDir() {
		return syscall.ENOTDIR
	}
	return fs.openHandle(i, unix.O_RDONLY|unix.O_DIRECTORY, in.Flags, false, out)
}

// ReleaseDir closes a directory handle.
func (fs *FS) ReleaseDir(r *fuseproto.Request, in *fuse.ReleaseIn) { fs.Release(r, in) }

// FsyncDir flushes a directory.
func (fs *FS) FsyncDir(r *fuseproto.Request, in *fuse.FsyncIn) syscall.Errno { return fs.Fsync(r, in) }

// direntBufs holds getdents64 buffers. A READDIR reply is at most a few
// pages; the host entries for it fit in a buffer of the same size, since a
// linux_dirent64 is never larger than the fuse_dirent it becomes.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadDir lists a directory from the position in.Offset, a d_off cookie of
// the host filesystem (0 is the start). Every call seeks to its position, so
// the entries that did not fit in one reply are read again for the next one.
func (fs *FS) ReadDir(r *fuseproto.Request, in *fuse.ReadIn, plus bool, w *fuseproto.DirWriter) syscall.Errno {
	h, errno := fs.handle(r, in.Fh)
	if errno != 0 {
		return errno
	}
	defer fs.store.PutHandle(h)
	if !h.Inode.IsDir() {
		return syscall.ENOTDIR
	}
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp

	h.Mu.Lock()
	defer h.Mu.Unlock()
	if _, err := rawsys.Seek(h.FD, int64(in.Offset), unix.SEEK_SET); err != nil {
		return fs.errno("readdir seek", err)
	}
	for {
		n, err := rawsys.Getdents(h.FD, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if w.Len() > 0 {
				return 0
			}
			return fs.errno("getdents", err)
		}
		if n == 0 {
			return 0 // end of directory
		}
		full, errno := fs.emitDirents(h, buf[:n], plus, w)
		if full || errno != 0 {
			if errno != 0 && w.Len() == 0 {
				return errno
			}
			return 0
		}
	}
}

// emitDirents adds the linux_dirent64 records in buf to w. It reports full
// when w had no room for an entry.
func (fs *FS) emitDirents(h *inodestore.Handle, buf []byte, plus bool, w *fuseproto.DirWriter) (full bool, errno syscall.Errno) {
	// linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name.
	const hdr = 19
	for len(buf) >= hdr {
		ino := binary.NativeEndian.Uint64(buf[0:])
		off := binary.NativeEndian.Uint64(buf[8:])
		reclen := int(binary.NativeEndian.Uint16(buf[16:]))
		typ := buf[18]
		if reclen < hdr || reclen > len(buf) {
			return false, syscall.EIO // the kernel gave us a record we cannot read
		}
		name := buf[hdr:reclen]
		for k, c := range name {
			if c == 0 {
				name = name[:k]
				break
			}
		}
		buf = buf[reclen:]
		if h.Inode.ID == fuseproto.RootID && string(name) == OrphanDir {
			continue
		}
		mode := uint32(typ) << 12 // DT_* is S_IF* >> 12
		if !plus {
			if !w.Add(string(name), ino, mode, off) {
				return true, 0
			}
			continue
		}
		if !w.FitsPlus(len(name)) {
			return true, 0
		}
		var entry fuse.EntryOut
		if sname := string(name); sname == "." || sname == ".." {
			// No lookup for these: the kernel ignores entries with node
			// id 0 when it fills its caches.
			entry.Ino, entry.Mode = ino, mode
		} else {
			switch errno := fs.lookupIn(h.Inode, sname, &entry); errno {
			case 0:
			case syscall.ENOENT:
				continue // removed since getdents saw it
			default:
				return false, errno
			}
		}
		if !w.AddPlus(string(name), &entry, off) {
			// FitsPlus said yes, so this cannot happen; if it does, give
			// the lookup back rather than leak it.
			if entry.NodeId != 0 {
				fs.store.Forget(fuseproto.NodeID(entry.NodeId), 1)
			}
			return true, 0
		}
	}
	return false, 0
}
