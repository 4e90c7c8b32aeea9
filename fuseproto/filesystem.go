// Package fuseproto is the FUSE request layer: it decodes FUSE requests from
// scattered input buffers, checks them against one opcode table, dispatches
// them to a FileSystem and encodes the replies into scattered output buffers.
//
// It knows nothing of the transport (a /dev/fuse file descriptor or a
// virtqueue descriptor chain) and nothing of the host filesystem. Everything it
// reads comes from an untrusted peer (the guest kernel), so every length and
// offset is checked before use and fixed-size structures are copied out of the
// input before a field is looked at.
package fuseproto

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// NodeID is a FUSE node id as the kernel sees it. RootID is the shared
// directory.
type NodeID uint64

// RootID is the node id of the filesystem root, fixed by the protocol.
const RootID NodeID = 1

// Request carries what every operation may need from the request header.
// A FileSystem must not keep it after the call returns.
type Request struct {
	// Header is a copy of the request's fuse_in_header.
	Header fuse.InHeader
	// Session is what INIT negotiated.
	Session *Session
	// Ext holds the request's extensions: the caller's supplementary
	// group and the security context of a node being created.
	Ext Extensions
}

// Node returns the node id the request is addressed to.
func (r *Request) Node() NodeID { return NodeID(r.Header.NodeId) }

// FileSystem is what the request layer serves. Every method returns 0 on
// success or the errno to send to the kernel; the request layer owns the
// encoding. Names have been checked to be single path components of at most
// NameMax bytes without NUL or '/'; names that create an entry are never "."
// or "..". Methods may be called from many goroutines at once.
type FileSystem interface {
	// Init is called for FUSE_INIT. kernelFlags are the capabilities the
	// kernel offers; the return value is the subset the filesystem wants.
	// It may also adjust out (max_write, time granularity and so on).
	Init(kernelFlags uint64, out *fuse.InitOut) (wantFlags uint64, errno syscall.Errno)
	// Capabilities is what Init would want of a kernel that offers every
	// capability, without its side effects: a migration destination
	// refuses a session that negotiated more (CheckSession).
	Capabilities() uint64
	// Destroy is called for FUSE_DESTROY and when the connection ends. It
	// must forget every node but the root and release every handle.
	Destroy()

	Lookup(r *Request, parent NodeID, name string, out *fuse.EntryOut) syscall.Errno
	// Forget drops nlookup references from node. It has no reply.
	Forget(node NodeID, nlookup uint64)
	GetAttr(r *Request, in *fuse.GetAttrIn, out *fuse.AttrOut) syscall.Errno
	SetAttr(r *Request, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno
	// Readlink writes the link target into dst and returns its length. A
	// target longer than dst gives ENAMETOOLONG.
	Readlink(r *Request, dst []byte) (int, syscall.Errno)
	Symlink(r *Request, parent NodeID, name, target string, out *fuse.EntryOut) syscall.Errno
	Mknod(r *Request, in *fuse.MknodIn, name string, out *fuse.EntryOut) syscall.Errno
	Mkdir(r *Request, in *fuse.MkdirIn, name string, out *fuse.EntryOut) syscall.Errno
	Unlink(r *Request, parent NodeID, name string) syscall.Errno
	Rmdir(r *Request, parent NodeID, name string) syscall.Errno
	// Rename serves RENAME (flags 0) and RENAME2; in.Flags carries
	// RENAME_NOREPLACE, RENAME_EXCHANGE or RENAME_WHITEOUT.
	Rename(r *Request, in *fuse.RenameIn, oldName, newName string) syscall.Errno
	Link(r *Request, in *fuse.LinkIn, newName string, out *fuse.EntryOut) syscall.Errno

	Open(r *Request, in *fuse.OpenIn, out *fuse.OpenOut) syscall.Errno
	Create(r *Request, in *fuse.CreateIn, name string, out *fuse.CreateOut) syscall.Errno
	// Tmpfile serves FUSE_TMPFILE: an unnamed file in directory r.Node().
	Tmpfile(r *Request, in *fuse.CreateIn, out *fuse.CreateOut) syscall.Errno
	// Read reads up to in.Size bytes at in.Offset into dst, whose total
	// length is at most in.Size, and returns the count.
	Read(r *Request, in *fuse.ReadIn, dst [][]byte) (int, syscall.Errno)
	// Write writes src, whose total length is in.Size, at in.Offset.
	Write(r *Request, in *fuse.WriteIn, src [][]byte) (uint32, syscall.Errno)
	StatFs(r *Request, out *fuse.StatfsOut) syscall.Errno
	Release(r *Request, in *fuse.ReleaseIn)
	Flush(r *Request, in *fuse.FlushIn) syscall.Errno
	Fsync(r *Request, in *fuse.FsyncIn) syscall.Errno
	Fallocate(r *Request, in *fuse.FallocateIn) syscall.Errno
	Lseek(r *Request, in *fuse.LseekIn, out *fuse.LseekOut) syscall.Errno
	CopyFileRange(r *Request, in *fuse.CopyFileRangeIn) (uint32, syscall.Errno)

	OpenDir(r *Request, in *fuse.OpenIn, out *fuse.OpenOut) syscall.Errno
	// ReadDir fills w from the directory handle in.Fh starting at the
	// position in.Offset (a cookie the filesystem handed out earlier).
	// With plus set (READDIRPLUS) every entry added with AddPlus counts as a
	// lookup of that entry.
	ReadDir(r *Request, in *fuse.ReadIn, plus bool, w *DirWriter) syscall.Errno
	ReleaseDir(r *Request, in *fuse.ReleaseIn)
	FsyncDir(r *Request, in *fuse.FsyncIn) syscall.Errno

	Access(r *Request, in *fuse.AccessIn) syscall.Errno
	// GetXAttr writes the value into dst and returns its length; with a
	// zero-length dst it returns the size the value needs.
	GetXAttr(r *Request, name string, dst []byte) (int, syscall.Errno)
	// ListXAttr works like GetXAttr for the NUL-separated name list.
	ListXAttr(r *Request, dst []byte) (int, syscall.Errno)
	SetXAttr(r *Request, in *fuse.SetXAttrIn, name string, value []byte) syscall.Errno
	RemoveXAttr(r *Request, name string) syscall.Errno
	// SyncFS serves FUSE_SYNCFS: syncfs(2) of the filesystem holding the
	// shared directory.
	SyncFS(r *Request) syscall.Errno
}
