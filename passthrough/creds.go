package passthrough

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/idmap"
)

// caller is the host identity a request that creates a node runs with: the
// guest's fsuid and fsgid from the request header and, with
// CREATE_SUPP_GROUP, the one supplementary group the kernel sent, all
// translated to host ids.
type caller struct {
	uid, gid uint32
	// suppGID is the supplementary group; hasSupp says whether there is
	// one.
	suppGID uint32
	hasSupp bool
}

// hostCaller translates the request's guest ids to host ids. An id a
// forbid-guest rule covers gives EPERM, as virtiofsd returns.
func (fs *FS) hostCaller(r *fuseproto.Request) (caller, syscall.Errno) {
	uid, err := fs.opts.UIDMap.ToHost(idmap.GuestUID(r.Header.Uid))
	if err != nil {
		return caller{}, idErrno(err)
	}
	gid, err := fs.opts.GIDMap.ToHost(idmap.GuestGID(r.Header.Gid))
	if err != nil {
		return caller{}, idErrno(err)
	}
	c := caller{uid: uint32(uid), gid: uint32(gid)}
	if fs.suppGroup.Load() && len(r.Ext.SuppGroups) == 1 {
		supp, err := fs.opts.GIDMap.ToHost(idmap.GuestGID(r.Ext.SuppGroups[0]))
		if err != nil {
			return caller{}, idErrno(err)
		}
		c.suppGID, c.hasSupp = uint32(supp), true
	}
	return c, 0
}

// idErrno is the errno for a guest id that cannot be mapped.
func idErrno(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return idmap.ForbiddenErrno
}

// identity is the daemon's own filesystem identity, to which a thread
// returns after serving a caller.
type identity struct {
	fsuid, fsgid uint32
	groups       []uint32
}

// currentIdentity reads the daemon's identity at start-up.
func currentIdentity() (identity, error) {
	id := identity{fsuid: uint32(unix.Geteuid()), fsgid: uint32(unix.Getegid())}
	groups, err := unix.Getgroups()
	if err != nil {
		return id, fmt.Errorf("getgroups: %w", err)
	}
	for _, g := range groups {
		id.groups = append(id.groups, uint32(g))
	}
	return id, nil
}

// asCaller runs fn with the calling thread's fsuid, fsgid and supplementary
// groups set to c's, so that the host kernel gives a new node c's ownership
// and checks c's permissions; and, when setUmask is set, with the thread's
// umask set to umask, so that the host kernel applies it unless the parent
// directory has a default ACL (DONT_MASK leaves the umask to us).
//
// All of these are per thread in Linux (setfsuid, setfsgid and setgroups
// through the raw system calls; the umask once the thread has its own
// fs_struct after unshare(CLONE_FS)), never process-wide as Go's
// syscall.Setuid is. The goroutine stays locked to its thread until the
// daemon's identity is restored; should restoring fail, it stays locked, so
// no other goroutine ever runs on that thread and the runtime ends the
// thread with the goroutine. Go never clones a new thread from a locked one,
// so no thread inherits a caller's identity either.
func (fs *FS) asCaller(c caller, umask uint32, setUmask bool, fn func() error) error {
	self := &fs.self
	switchIDs := fs.canSwitch && (c.uid != self.fsuid || c.gid != self.fsgid || c.hasSupp)
	if !switchIDs && !setUmask {
		return fn()
	}
	runtime.LockOSThread()
	if setUmask {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("unshare(CLONE_FS) for the umask: %w", err)
		}
	}
	if switchIDs {
		var groups [1]uint32
		n := 0
		if c.hasSupp {
			groups[0], n = c.suppGID, 1
		}
		if err := setGroups(groups[:n]); err != nil {
			return fs.restoreIdentity(fmt.Errorf("setgroups: %w", err), false, true)
		}
		if err := setFSID(unix.SYS_SETFSGID, c.gid); err != nil {
			return fs.restoreIdentity(fmt.Errorf("setfsgid %d: %w", c.gid, err), false, true)
		}
		if err := setFSID(unix.SYS_SETFSUID, c.uid); err != nil {
			return fs.restoreIdentity(fmt.Errorf("setfsuid %d: %w", c.uid, err), false, true)
		}
	}
	if setUmask {
		unix.Umask(int(umask & 0o777))
	}
	return fs.restoreIdentity(fn(), setUmask, switchIDs)
}

// restoreIdentity gives the locked thread back the daemon's identity and
// umask 0, unlocks it and returns err. A thread whose identity cannot be
// restored stays locked: it is retired with its goroutine.
func (fs *FS) restoreIdentity(err error, umask, ids bool) error {
	if umask {
		unix.Umask(0)
	}
	if ids {
		self := &fs.self
		rerr := errors.Join(
			setFSID(unix.SYS_SETFSUID, self.fsuid),
			setFSID(unix.SYS_SETFSGID, self.fsgid),
			setGroups(self.groups),
		)
		if rerr != nil {
			fs.log.Error("restoring the daemon's identity failed; retiring the thread", "err", rerr)
			return err
		}
	}
	runtime.UnlockOSThread()
	return err
}

// setFSID calls setfsuid or setfsgid (nr) and checks that it took: both
// return the previous id whatever happens, so the id is read back by a
// second call with an invalid id, which changes nothing.
func setFSID(nr uintptr, id uint32) error {
	unix.RawSyscall(nr, uintptr(id), 0, 0)
	now, _, _ := unix.RawSyscall(nr, ^uintptr(0), 0, 0)
	if uint32(now) != id {
		return syscall.EPERM
	}
	return nil
}

// setGroups sets the calling thread's supplementary groups (the raw system
// call: unix.Setgroups would allocate, syscall.Setgroups changes every
// thread).
func setGroups(groups []uint32) error {
	var p unsafe.Pointer
	if len(groups) > 0 {
		p = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(p), 0); e != 0 {
		return e
	}
	return nil
}
