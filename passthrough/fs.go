// Package passthrough serves FUSE operations on a host directory, the
// shared directory, and never lets them reach outside it.
//
// Every operation works relative to descriptors: the inode store's O_PATH
// descriptor (or file handle) of the object or of its parent directory, and
// a single path component that the request layer has checked. New names are
// resolved with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS) where the kernel has it, O_NOFOLLOW otherwise, so a
// symlink on the host is never followed and a directory renamed or swapped
// for a symlink under us cannot lead out. Objects are re-opened through
// /proc/self/fd (a descriptor opened at start-up), which reaches the object
// itself rather than a path; device nodes and FIFOs are never opened.
package passthrough

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/idmap"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// FS is the passthrough filesystem. It implements fuseproto.FileSystem.
type FS struct {
	opts    Options
	log     *slog.Logger
	store   *inodestore.Store
	procFD  int // O_PATH descriptor of /proc/self/fd
	timeout time.Duration

	// writeback is set when INIT negotiated the writeback cache.
	writeback atomic.Bool
	// killpriv is set when INIT negotiated HANDLE_KILLPRIV_V2.
	killpriv atomic.Bool
	// submounts is set when INIT negotiated SUBMOUNTS.
	submounts atomic.Bool
	// posixACL is set when INIT negotiated POSIX_ACL, DONT_MASK and
	// SETXATTR_EXT.
	posixACL atomic.Bool
	// secLabel is set when INIT negotiated SECURITY_CTX.
	secLabel atomic.Bool
	// suppGroup is set when INIT negotiated CREATE_SUPP_GROUP.
	suppGroup atomic.Bool

	// self is the daemon's own identity, which threads return to after
	// running as a caller; canSwitch says whether the daemon may take
	// other identities at all (CAP_SETUID and CAP_SETGID).
	self      identity
	canSwitch bool
	// capabilityName is the host name of the guest's security.capability
	// when the xattr map stores it elsewhere: the host kernel no longer
	// clears it on write, truncate and chown, so we do ("" otherwise).
	capabilityName string

	// orphans keeps the files the guest removed while holding them open
	// (see OrphanDir).
	orphans *orphanage

	// rootMount is the shared directory's mount id; seenMounts holds the
	// other mounts objects were found on, each checked once for a file
	// system that may hang (checkMount).
	rootMount  uint64
	seenMounts sync.Map
}

var _ fuseproto.FileSystem = (*FS)(nil)

// New opens the shared directory and /proc/self/fd, the only host paths the
// filesystem ever resolves, and returns the filesystem.
func New(opts Options) (*FS, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.SharedDir == "" {
		return nil, fmt.Errorf("no shared directory given")
	}
	rootFD, err := unix.Open(opts.SharedDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open shared directory %s: %w", opts.SharedDir, err)
	}
	procFD, err := unix.Open("/proc/self/fd", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		rawsys.Close(rootFD)
		return nil, fmt.Errorf("open /proc/self/fd: %w", err)
	}
	var budget *inodestore.FDBudget
	if opts.MaxGuestFDs > 0 {
		budget = inodestore.NewFDBudget(opts.MaxGuestFDs)
	}
	store, err := inodestore.New(rootFD, inodestore.Options{
		FileHandles: opts.InodeFileHandles,
		Budget:      budget,
		ProcSelfFD:  procFD,
		Logger:      log,
	})
	if err != nil {
		rawsys.Close(rootFD)
		rawsys.Close(procFD)
		return nil, fmt.Errorf("shared directory %s: %w", opts.SharedDir, err)
	}
	// The kernel applies the guest's umask before it sends a mode (we do
	// not negotiate DONT_MASK), so ours must not mask it again. umask is
	// process-wide; the daemon creates nothing else that depends on it.
	unix.Umask(0)
	self, err := currentIdentity()
	if err != nil {
		store.Close()
		rawsys.Close(procFD)
		return nil, err
	}
	orphans, err := newOrphanage()
	if err != nil {
		store.Close()
		rawsys.Close(procFD)
		return nil, err
	}
	fs := &FS{
		orphans:   orphans,
		opts:      opts,
		log:       log,
		store:     store,
		procFD:    procFD,
		timeout:   opts.Cache.timeout(),
		self:      self,
		canSwitch: hasSetIDCaps(),
	}
	if !fs.canSwitch {
		log.Info("no CAP_SETUID and CAP_SETGID: new files are owned by the daemon's user, not the guest's")
	}
	if name, remapped := opts.XattrMap.SecurityCapability(); remapped {
		fs.capabilityName = name
	}
	var stx unix.Statx_t
	if err := statxFD(rootFD, &stx); err == nil {
		fs.rootMount = stx.Mnt_id
	}
	fs.watchForHangingFS(rootFD)
	return fs, nil
}

// hasSetIDCaps reports whether the daemon holds CAP_SETUID and CAP_SETGID,
// which it needs to create nodes with the guest's ids.
func hasSetIDCaps() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	const want = 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID // both < 32
	return data[0].Effective&want == want
}

// Store returns the inode store, for migration and diagnostics.
func (fs *FS) Store() *inodestore.Store { return fs.store }

// Close releases every descriptor the filesystem holds.
func (fs *FS) Close() error {
	fs.store.Close()
	fs.dropAllOrphans()
	if fs.orphans.dirFD >= 0 {
		rawsys.Close(fs.orphans.dirFD)
	}
	return rawsys.Close(fs.procFD)
}

// Init chooses the capabilities the filesystem wants from those the kernel
// offers.
func (fs *FS) Init(kernelFlags uint64, out *fuse.InitOut) (uint64, syscall.Errno) {
	want := fs.wants(kernelFlags)
	if fs.opts.KillprivV2 && want&fuse.CAP_HANDLE_KILLPRIV_V2 == 0 {
		fs.log.Warn("--killpriv-v2: the kernel does not offer HANDLE_KILLPRIV_V2")
	}
	if fs.opts.AnnounceSubmounts && want&fuse.CAP_SUBMOUNTS == 0 {
		fs.log.Warn("--announce-submounts: the kernel does not offer SUBMOUNTS")
	}
	if fs.opts.PosixACL && want&fuse.CAP_POSIX_ACL == 0 {
		fs.log.Error("--posix-acl: the kernel does not offer POSIX_ACL, DONT_MASK and SETXATTR_EXT")
		return 0, syscall.EPROTO
	}
	if fs.opts.SecurityLabel && want&fuse.CAP_SECURITY_CTX == 0 {
		fs.log.Error("--security-label: the kernel does not offer SECURITY_CTX")
		return 0, syscall.EPROTO
	}
	out.TimeGran = 1
	fs.resume(want)
	return want, 0
}

// Capabilities is what Init asks of a kernel that offers everything.
func (fs *FS) Capabilities() uint64 { return fs.wants(^uint64(0)) }

// wants is the subset of kernelFlags the options ask for.
func (fs *FS) wants(kernelFlags uint64) uint64 {
	var want uint64 = fuse.CAP_EXPORT_SUPPORT | fuse.CAP_AUTO_INVAL_DATA | fuse.CAP_CACHE_SYMLINKS
	if !fs.opts.NoReaddirplus {
		want |= fuse.CAP_READDIRPLUS | fuse.CAP_READDIRPLUS_AUTO
	}
	if fs.opts.Writeback {
		want |= fuse.CAP_WRITEBACK_CACHE
	}
	if fs.opts.KillprivV2 {
		want |= fuse.CAP_HANDLE_KILLPRIV_V2
	}
	if fs.opts.AnnounceSubmounts {
		want |= fuse.CAP_SUBMOUNTS
	}
	if fs.opts.AllowMmap {
		want |= fuse.CAP_DIRECT_IO_ALLOW_MMAP
	}
	if fs.opts.PosixACL {
		// All three or none, as virtiofsd: ACLs without DONT_MASK would
		// have the guest apply the umask even where a default ACL says
		// otherwise, and without SETXATTR_EXT the kill-sgid rule is lost.
		const acl = fuse.CAP_POSIX_ACL | fuse.CAP_DONT_MASK | fuse.CAP_SETXATTR_EXT
		if kernelFlags&acl == acl {
			want |= acl
		}
	}
	if fs.opts.SecurityLabel {
		want |= fuse.CAP_SECURITY_CTX
	}
	want |= fuse.CAP_CREATE_SUPP_GROUP
	// Only what the kernel offers; EXPORT_SUPPORT and the others the
	// request layer masks the same way.
	return want & kernelFlags
}

// Destroy forgets every inode but the root and closes every handle.
func (fs *FS) Destroy() {
	fs.store.Reset()
	fs.dropAllOrphans() // the guest has closed them all
	fs.resume(0)
}

// resume records what a session that negotiated flags turns on: set by
// Init, by a migration destination that never sees INIT (ImportState), and
// cleared by Destroy. Every capability Init asks for is one the kernel
// offered, so what it wants is what the session has.
func (fs *FS) resume(flags uint64) {
	fs.writeback.Store(flags&fuse.CAP_WRITEBACK_CACHE != 0)
	fs.killpriv.Store(flags&fuse.CAP_HANDLE_KILLPRIV_V2 != 0)
	fs.submounts.Store(flags&fuse.CAP_SUBMOUNTS != 0)
	fs.posixACL.Store(flags&fuse.CAP_POSIX_ACL != 0)
	fs.secLabel.Store(flags&fuse.CAP_SECURITY_CTX != 0)
	fs.suppGroup.Store(flags&fuse.CAP_CREATE_SUPP_GROUP != 0)
}

// errno turns an error from a system call into the errno for the guest.
// Anything that is not an errno is a bug of ours, reported as EIO.
func (fs *FS) errno(op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	fs.log.Warn("operation failed", "op", op, "err", err)
	return syscall.EIO
}

// inode fetches node for the duration of a request: call put when done.
func (fs *FS) inode(node fuseproto.NodeID) (*inodestore.Inode, syscall.Errno) {
	i, err := fs.store.Get(node)
	if err != nil {
		return nil, fs.errno("get inode", err)
	}
	return i, 0
}

func (fs *FS) put(i *inodestore.Inode) { fs.store.Put(i) }

// fillEntry describes inode i, whose statx is stx, found in a directory on
// mount parentMount, to the kernel.
func (fs *FS) fillEntry(out *fuse.EntryOut, i *inodestore.Inode, stx *unix.Statx_t, parentMount uint64) {
	out.NodeId = uint64(i.ID)
	out.Generation = 0
	out.SetEntryTimeout(fs.timeout)
	out.SetAttrTimeout(fs.timeout)
	fs.fillAttr(&out.Attr, stx)
	if fs.submounts.Load() && parentMount != noParentMount && stx.Mnt_id != parentMount && i.IsDir() {
		out.Attr.Flags |= fuse.ATTR_SUBMOUNT
	}
}

// fillAttr converts a statx result to FUSE attributes, with the owner and
// group as the guest sees them.
func (fs *FS) fillAttr(a *fuse.Attr, stx *unix.Statx_t) {
	a.Ino = stx.Ino
	a.Size = stx.Size
	a.Blocks = stx.Blocks
	a.Atime, a.Atimensec = uint64(stx.Atime.Sec), stx.Atime.Nsec
	a.Mtime, a.Mtimensec = uint64(stx.Mtime.Sec), stx.Mtime.Nsec
	a.Ctime, a.Ctimensec = uint64(stx.Ctime.Sec), stx.Ctime.Nsec
	a.Mode = uint32(stx.Mode)
	a.Nlink = stx.Nlink
	if fs.orphans.count.Load() > 0 {
		a.Nlink = fs.guestNlink(inodestore.KeyOf(stx), stx.Nlink)
	}
	a.Uid = uint32(fs.opts.UIDMap.ToGuest(idmap.HostUID(stx.Uid)))
	a.Gid = uint32(fs.opts.GIDMap.ToGuest(idmap.HostGID(stx.Gid)))
	a.Rdev = encodeDev(stx.Rdev_major, stx.Rdev_minor)
	a.Blksize = stx.Blksize
}

// encodeDev packs a device number the way the kernel's new_encode_dev
// does, which is how FUSE carries rdev in 32 bits.
func encodeDev(major, minor uint32) uint32 {
	return (minor & 0xff) | (major&0xfff)<<8 | (minor&^0xff)<<12
}

// decodeDev is new_decode_dev, for MKNOD's rdev.
func decodeDev(dev uint32) uint64 {
	major := (dev & 0xfff00) >> 8
	minor := (dev & 0xff) | ((dev >> 12) & 0xfff00)
	return unix.Mkdev(major, minor)
}

const statxFlags = unix.AT_EMPTY_PATH | unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_SYNC_AS_STAT

// statxFD returns the statx of the object open at fd (any kind of fd).
func statxFD(fd int, stx *unix.Statx_t) error {
	for {
		err := rawsys.Statx(fd, "", statxFlags, inodestore.StatxMask, stx)
		if err != unix.EINTR {
			return err
		}
	}
}
