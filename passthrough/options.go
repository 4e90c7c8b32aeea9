package passthrough

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ferryfs/ferryfs/idmap"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/xattrmap"
)

// CachePolicy is virtiofsd's --cache: how much the guest may cache.
type CachePolicy int

const (
	// CacheAuto: close-to-open consistency; metadata cached for a second.
	CacheAuto CachePolicy = iota
	// CacheAlways: the guest keeps file data across opens (KEEP_CACHE) and
	// caches metadata for a day. Only for directories nobody else changes.
	CacheAlways
	// CacheNever: no data caching (DIRECT_IO on files) and no metadata
	// caching.
	CacheNever
	// CacheMetadata: like never for file data, like always for directory
	// contents and metadata.
	CacheMetadata
)

var cachePolicyNames = [...]string{"auto", "always", "never", "metadata"}

// String returns the flag spelling of c.
func (c CachePolicy) String() string {
	if c < 0 || int(c) >= len(cachePolicyNames) {
		return fmt.Sprintf("CachePolicy(%d)", int(c))
	}
	return cachePolicyNames[c]
}

// ParseCachePolicy parses a --cache value.
func ParseCachePolicy(s string) (CachePolicy, error) {
	for i, name := range cachePolicyNames {
		if s == name {
			return CachePolicy(i), nil
		}
	}
	return 0, fmt.Errorf("invalid cache policy %q: want auto, always, never or metadata", s)
}

// timeout is the entry and attribute validity virtiofsd gives each policy.
func (c CachePolicy) timeout() time.Duration {
	switch c {
	case CacheNever:
		return 0
	case CacheAuto:
		return time.Second
	default:
		return 86400 * time.Second
	}
}

// Options configures the passthrough; the names follow virtiofsd's flags.
type Options struct {
	// SharedDir is the host directory served as the root.
	SharedDir string
	// Cache is --cache.
	Cache CachePolicy
	// Writeback is --writeback: negotiate the kernel's writeback cache.
	Writeback bool
	// AllowDirectIO is --allow-direct-io: honour the guest's O_DIRECT.
	AllowDirectIO bool
	// NoReaddirplus is --no-readdirplus.
	NoReaddirplus bool
	// KillprivV2 is --killpriv-v2: the daemon clears setuid/setgid bits
	// and file capabilities on write, truncate and chown, as the kernel
	// would for an unprivileged writer.
	KillprivV2 bool
	// PreserveNoatime is --preserve-noatime: keep the guest's O_NOATIME.
	PreserveNoatime bool
	// Readonly is --readonly: every modifying operation returns EROFS.
	Readonly bool
	// Xattr is --xattr: pass extended attributes through.
	Xattr bool
	// AnnounceSubmounts is --announce-submounts: mark directories that
	// are mount points on the host, so the guest gives each its own
	// superblock (and inode numbers from different filesystems cannot
	// collide in one guest filesystem).
	AnnounceSubmounts bool
	// AllowMmap is --allow-mmap: let the guest mmap files opened with
	// DIRECT_IO (--cache=never or metadata) with MAP_SHARED.
	AllowMmap bool
	// PosixACL is --posix-acl: negotiate POSIX ACLs with the guest (ACL
	// attributes, SETXATTR_EXT, DONT_MASK), so that the host file system
	// enforces them and applies the guest's umask itself. Without it the
	// ACL attributes are refused with EOPNOTSUPP, as in virtiofsd.
	PosixACL bool
	// SecurityLabel is --security-label: negotiate FUSE_SECURITY_CTX and
	// set the security label the guest's LSM gives a new node on it.
	SecurityLabel bool
	// XattrMap is --xattrmap; nil passes names unchanged.
	XattrMap *xattrmap.Map
	// UIDMap and GIDMap are --translate-uid and --translate-gid; the zero
	// values are the identity.
	UIDMap idmap.UIDMap
	GIDMap idmap.GIDMap
	// InodeFileHandles is --inode-file-handles.
	InodeFileHandles inodestore.FileHandleMode
	// MaxGuestFDs bounds the descriptors held on the guest's behalf; 0
	// means no bound.
	MaxGuestFDs int
	// Logger receives the filesystem's logs; nil means slog.Default().
	Logger *slog.Logger
}
