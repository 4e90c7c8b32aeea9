package passthrough

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/idmap"
	"github.com/ferryfs/ferryfs/xattrmap"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SETUID, CAP_SETGID, CAP_CHOWN): run as root, as CI does")
	}
}

// callerReq is a request from guest uid:gid addressed to node.
func callerReq(node fuseproto.NodeID, uid, gid uint32) *fuseproto.Request {
	return &fuseproto.Request{Header: fuse.InHeader{NodeId: uint64(node), Caller: fuse.Caller{Owner: fuse.Owner{Uid: uid, Gid: gid}}}}
}

func mustParseIDs(t *testing.T, uids, gids []string) (idmap.UIDMap, idmap.GIDMap) {
	t.Helper()
	u, err := idmap.ParseUIDMap(uids)
	if err != nil {
		t.Fatal(err)
	}
	g, err := idmap.ParseGIDMap(gids)
	if err != nil {
		t.Fatal(err)
	}
	return u, g
}

func hostOwner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// TestCreatorIdentity: every operation that makes a node makes it with the
// guest caller's translated ids, and attributes go back translated.
func TestCreatorIdentity(t *testing.T) {
	requireRoot(t)
	uids, gids := mustParseIDs(t,
		[]string{"map:1000:101000:10", "squash-guest:2000:65534:100", "forbid-guest:3000:1"},
		[]string{"map:1000:101000:10", "squash-guest:2000:65534:100"})
	forEachMode(t, Options{UIDMap: uids, GIDMap: gids}, func(t *testing.T, fs *FS, dir string) {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		makers := []struct {
			name string
			make func(r *fuseproto.Request, name string) (fuse.Attr, syscall.Errno)
		}{
			{"create", func(r *fuseproto.Request, name string) (fuse.Attr, syscall.Errno) {
				var out fuse.CreateOut
				errno := fs.Create(r, &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, name, &out)
				if errno == 0 {
					release(fs, fuseproto.NodeID(out.NodeId), out.Fh)
				}
				return out.Attr, errno
			}},
			{"mkdir", func(r *fuseproto.Request, name string) (fuse.Attr, syscall.Errno) {
				var out fuse.EntryOut
				errno := fs.Mkdir(r, &fuse.MkdirIn{Mode: 0o755}, name, &out)
				return out.Attr, errno
			}},
			{"mknod", func(r *fuseproto.Request, name string) (fuse.Attr, syscall.Errno) {
				var out fuse.EntryOut
				errno := fs.Mknod(r, &fuse.MknodIn{Mode: unix.S_IFIFO | 0o644}, name, &out)
				return out.Attr, errno
			}},
			{"symlink", func(r *fuseproto.Request, name string) (fuse.Attr, syscall.Errno) {
				var out fuse.EntryOut
				errno := fs.Symlink(r, r.Node(), name, "target", &out)
				return out.Attr, errno
			}},
		}
		for _, m := range makers {
			t.Run(m.name, func(t *testing.T) {
				cases := []struct {
					guestUID, guestGID uint32
					hostUID, hostGID   uint32
					attrUID, attrGID   uint32
					errno              syscall.Errno
				}{
					{1000, 1000, 101000, 101000, 1000, 1000, 0},
					{1005, 1001, 101005, 101001, 1005, 1001, 0},
					{0, 0, 0, 0, 0, 0, 0},
					{2042, 2001, 65534, 65534, 65534, 65534, 0}, // squashed: the host id goes back as is
					{500, 500, 500, 500, 500, 500, 0},           // no rule: identity
					{3000, 1000, 0, 0, 0, 0, syscall.EPERM},
				}
				for _, c := range cases {
					name := fmt.Sprintf("%s-%d", m.name, c.guestUID)
					attr, errno := m.make(callerReq(fuseproto.RootID, c.guestUID, c.guestGID), name)
					if errno != c.errno {
						t.Fatalf("guest %d:%d: errno %v, want %v", c.guestUID, c.guestGID, errno, c.errno)
					}
					if errno != 0 {
						mustNotExist(t, filepath.Join(dir, name))
						continue
					}
					if u, g := hostOwner(t, filepath.Join(dir, name)); u != c.hostUID || g != c.hostGID {
						t.Errorf("guest %d:%d made a node owned by host %d:%d, want %d:%d", c.guestUID, c.guestGID, u, g, c.hostUID, c.hostGID)
					}
					if attr.Uid != c.attrUID || attr.Gid != c.attrGID {
						t.Errorf("guest %d:%d sees owner %d:%d, want %d:%d", c.guestUID, c.guestGID, attr.Uid, attr.Gid, c.attrUID, c.attrGID)
					}
				}
			})
		}
		// The daemon's own thread identity is back after all of this.
		if u, g := unix.Geteuid(), unix.Getegid(); u != 0 || g != 0 {
			t.Fatalf("daemon identity changed to %d:%d", u, g)
		}
		writeHostFile(t, filepath.Join(dir, "after"), "")
		if u, g := hostOwner(t, filepath.Join(dir, "after")); u != 0 || g != 0 {
			t.Fatalf("a file the daemon's process made afterwards is owned by %d:%d", u, g)
		}
	})
}

// TestChownTranslated: SETATTR's owner and group are guest ids.
func TestChownTranslated(t *testing.T) {
	requireRoot(t)
	uids, gids := mustParseIDs(t, []string{"map:1000:101000:10", "forbid-guest:3000:1"}, []string{"map:1000:101000:10"})
	forEachMode(t, Options{UIDMap: uids, GIDMap: gids}, func(t *testing.T, fs *FS, dir string) {
		path := filepath.Join(dir, "f")
		writeHostFile(t, path, "")
		node := mustLookup(t, fs, fuseproto.RootID, "f")
		var out fuse.AttrOut
		in := &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_UID | fuse.FATTR_GID, Owner: fuse.Owner{Uid: 1002, Gid: 1003}}}
		if errno := fs.SetAttr(req(node), in, &out); errno != 0 {
			t.Fatal(errno)
		}
		if u, g := hostOwner(t, path); u != 101002 || g != 101003 {
			t.Fatalf("host owner %d:%d, want 101002:101003", u, g)
		}
		if out.Uid != 1002 || out.Gid != 1003 {
			t.Fatalf("guest sees %d:%d, want 1002:1003", out.Uid, out.Gid)
		}
		in.Valid, in.Uid = fuse.FATTR_UID, 3000
		if errno := fs.SetAttr(req(node), in, &out); errno != syscall.EPERM {
			t.Fatalf("chown to a forbidden guest uid: %v, want EPERM", errno)
		}
		// ACCESS compares guest ids with the owner as the guest sees it.
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		if errno := fs.Access(callerReq(node, 1002, 1003), &fuse.AccessIn{Mask: unix.R_OK | unix.W_OK}); errno != 0 {
			t.Fatalf("owner's access: %v", errno)
		}
		if errno := fs.Access(callerReq(node, 101002, 101003), &fuse.AccessIn{Mask: unix.R_OK}); errno != syscall.EACCES {
			t.Fatalf("access by the host id seen from the guest: %v, want EACCES", errno)
		}
	})
}

// TestSupplementaryGroup: with CREATE_SUPP_GROUP the group the kernel sends
// lets a caller create in a directory writable only through that group.
func TestSupplementaryGroup(t *testing.T) {
	requireRoot(t)
	fs, dir := newFS(t, Options{})
	sub := filepath.Join(dir, "team")
	if err := os.Mkdir(sub, 0o770); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sub, 0, 2000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	node := mustLookup(t, fs, fuseproto.RootID, "team")
	var out fuse.EntryOut
	r := callerReq(node, 1000, 1000)
	if errno := fs.Mkdir(r, &fuse.MkdirIn{Mode: 0o755}, "without", &out); errno != syscall.EACCES {
		t.Fatalf("mkdir without the group: %v, want EACCES", errno)
	}
	r.Ext.SuppGroups = []uint32{2000}
	if errno := fs.Mkdir(r, &fuse.MkdirIn{Mode: 0o755}, "with", &out); errno != 0 {
		t.Fatalf("mkdir with supplementary group 2000: %v", errno)
	}
	if u, g := hostOwner(t, filepath.Join(sub, "with")); u != 1000 || g != 1000 {
		t.Fatalf("owner %d:%d, want 1000:1000", u, g)
	}
	if groups, err := unix.Getgroups(); err != nil || len(groups) != len(fs.self.groups) {
		t.Fatalf("daemon groups now %v (%v), want %v", groups, err, fs.self.groups)
	}
}

// TestXattrMapping: --xattrmap renames on the way in, filters and renames
// on the way out, and refuses what its rules refuse.
func TestXattrMapping(t *testing.T) {
	m, err := xattrmap.Parse(":map::user.virtiofs.:")
	if err != nil {
		t.Fatal(err)
	}
	forEachMode(t, Options{Xattr: true, XattrMap: m}, func(t *testing.T, fs *FS, dir string) {
		path := filepath.Join(dir, "f")
		writeHostFile(t, path, "")
		if err := unix.Setxattr(path, "user.host-only", []byte("h"), 0); err != nil {
			t.Skipf("host file system without user xattrs: %v", err)
		}
		node := mustLookup(t, fs, fuseproto.RootID, "f")
		r := req(node)
		if errno := fs.SetXAttr(r, &fuse.SetXAttrIn{}, "user.foo", []byte("bar")); errno != 0 {
			t.Fatal(errno)
		}
		buf := make([]byte, 256)
		if n, err := unix.Getxattr(path, "user.virtiofs.user.foo", buf); err != nil || string(buf[:n]) != "bar" {
			t.Fatalf("host attribute user.virtiofs.user.foo: %q, %v", buf[:n], err)
		}
		if n, errno := fs.GetXAttr(r, "user.foo", buf); errno != 0 || string(buf[:n]) != "bar" {
			t.Fatalf("guest get user.foo: %q, %v", buf[:n], errno)
		}
		n, errno := fs.ListXAttr(r, buf)
		if errno != 0 || string(buf[:n]) != "user.foo\x00" {
			t.Fatalf("guest list: %q, %v; want only user.foo (host-only names hidden)", buf[:n], errno)
		}
		// Every guest name is prefixed, so the host's own attributes are
		// out of the guest's reach.
		if _, errno := fs.GetXAttr(r, "user.host-only", buf); errno != syscall.ENODATA {
			t.Fatalf("guest getting the host's own attribute: %v, want ENODATA", errno)
		}
		if errno := fs.RemoveXAttr(r, "user.host-only"); errno != syscall.ENODATA {
			t.Fatalf("guest removing the host's own attribute: %v, want ENODATA", errno)
		}
		if errno := fs.RemoveXAttr(r, "user.foo"); errno != 0 {
			t.Fatal(errno)
		}
		if _, err := unix.Getxattr(path, "user.virtiofs.user.foo", buf); err != unix.ENODATA {
			t.Fatalf("host attribute after remove: %v", err)
		}
	})
}

// TestCapabilityRemapped: security.capability stored under another name is
// cleared on write, truncate and chown as the kernel would clear the real
// one.
func TestCapabilityRemapped(t *testing.T) {
	requireRoot(t)
	m, err := xattrmap.Parse(":prefix:all:security.:trusted.virtiofs.::bad:all:trusted.virtiofs.:::ok:all:::")
	if err != nil {
		t.Fatal(err)
	}
	forEachMode(t, Options{Xattr: true, XattrMap: m}, func(t *testing.T, fs *FS, dir string) {
		path := filepath.Join(dir, "f")
		writeHostFile(t, path, "data")
		node := mustLookup(t, fs, fuseproto.RootID, "f")
		capValue := make([]byte, 20)
		binary.LittleEndian.PutUint32(capValue, 0x02000001) // VFS_CAP_REVISION_2 | effective
		steps := []struct {
			name string
			do   func() syscall.Errno
		}{
			{"write", func() syscall.Errno {
				fh, errno := open(t, fs, node, unix.O_WRONLY)
				if errno != 0 {
					return errno
				}
				defer release(fs, node, fh)
				_, errno = fs.Write(req(node), &fuse.WriteIn{Fh: fh, Size: 1}, [][]byte{[]byte("x")})
				return errno
			}},
			{"truncate", func() syscall.Errno {
				var out fuse.AttrOut
				return fs.SetAttr(req(node), &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE, Size: 1}}, &out)
			}},
			{"chown", func() syscall.Errno {
				var out fuse.AttrOut
				return fs.SetAttr(req(node), &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_UID, Owner: fuse.Owner{Uid: 5}}}, &out)
			}},
			{"open O_TRUNC", func() syscall.Errno {
				fh, errno := open(t, fs, node, unix.O_WRONLY|unix.O_TRUNC)
				if errno == 0 {
					release(fs, node, fh)
				}
				return errno
			}},
		}
		for _, s := range steps {
			if errno := fs.SetXAttr(req(node), &fuse.SetXAttrIn{}, "security.capability", capValue); errno != 0 {
				t.Fatalf("set security.capability: %v", errno)
			}
			if _, err := unix.Getxattr(path, "trusted.virtiofs.security.capability", nil); err != nil {
				t.Fatalf("host copy of security.capability: %v", err)
			}
			if errno := s.do(); errno != 0 {
				t.Fatalf("%s: %v", s.name, errno)
			}
			if _, err := unix.Getxattr(path, "trusted.virtiofs.security.capability", nil); err != unix.ENODATA {
				t.Fatalf("after %s the mapped security.capability is still there (%v)", s.name, err)
			}
		}
	})
}

// TestACLs: without --posix-acl the ACL attributes are refused; with it the
// umask is applied by the host kernel, unless a default ACL says otherwise,
// and ACL_KILL_SGID clears the setgid bit.
func TestACLs(t *testing.T) {
	requireRoot(t)
	fs, _ := newFS(t, Options{Xattr: true})
	if errno := fs.SetXAttr(req(fuseproto.RootID), &fuse.SetXAttrIn{}, aclAccess, []byte{2, 0, 0, 0}); errno != syscall.EOPNOTSUPP {
		t.Fatalf("ACL without --posix-acl: %v, want EOPNOTSUPP", errno)
	}

	fs, dir := newFS(t, Options{Xattr: true, PosixACL: true})
	if !fs.posixACL.Load() {
		t.Fatal("POSIX ACLs not negotiated")
	}
	var out fuse.EntryOut
	if errno := fs.Mkdir(callerReq(fuseproto.RootID, 0, 0), &fuse.MkdirIn{Mode: 0o777, Umask: 0o027}, "masked", &out); errno != 0 {
		t.Fatal(errno)
	}
	if st, err := os.Stat(filepath.Join(dir, "masked")); err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("mkdir 0777 with umask 027: %v %v, want 0750", st.Mode(), err)
	}
	// A default ACL on the parent replaces the umask.
	withDefault := filepath.Join(dir, "masked")
	if err := unix.Setxattr(withDefault, aclDefault, aclXattr(0o7, 0o7, 0o5), 0); err != nil {
		t.Skipf("host file system without POSIX ACLs: %v", err)
	}
	parent := mustLookup(t, fs, fuseproto.RootID, "masked")
	var cout fuse.CreateOut
	if errno := fs.Create(callerReq(parent, 0, 0), &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o666, Umask: 0o077}, "f", &cout); errno != 0 {
		t.Fatal(errno)
	}
	release(fs, fuseproto.NodeID(cout.NodeId), cout.Fh)
	if st, err := os.Stat(filepath.Join(withDefault, "f")); err != nil || st.Mode().Perm() != 0o664 {
		t.Fatalf("create 0666, umask 077, default ACL rwx/rwx/r-x: %v %v, want 0664", st.Mode(), err)
	}
	// The daemon's own umask is 0 again.
	if old := unix.Umask(0); old != 0 {
		t.Fatalf("process umask %o after requests", old)
	}

	sgid := filepath.Join(dir, "sgid")
	writeHostFile(t, sgid, "")
	if err := os.Chmod(sgid, 0o2775); err != nil {
		t.Fatal(err)
	}
	node := mustLookup(t, fs, fuseproto.RootID, "sgid")
	in := &fuse.SetXAttrIn{SetXAttrFlags: fuse.SETXATTR_ACL_KILL_SGID}
	if errno := fs.SetXAttr(req(node), in, aclAccess, aclXattr(0o7, 0o7, 0o5)); errno != 0 {
		t.Fatal(errno)
	}
	if st, err := os.Stat(sgid); err != nil || st.Mode()&os.ModeSetgid != 0 {
		t.Fatalf("setgid still set after ACL_KILL_SGID: %v %v", st.Mode(), err)
	}
}

// aclXattr encodes a minimal POSIX ACL (owner, group, other) in the xattr
// format.
func aclXattr(user, group, other uint16) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2) // POSIX_ACL_XATTR_VERSION
	for _, e := range []struct{ tag, perm uint16 }{{0x01, user}, {0x04, group}, {0x20, other}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

// TestSecurityLabel: with SECURITY_CTX the label in the request's extension
// is set, under its mapped name, on every kind of new node.
func TestSecurityLabel(t *testing.T) {
	requireRoot(t)
	m, err := xattrmap.Parse(":map:security.:trusted.virtiofs.:")
	if err != nil {
		t.Fatal(err)
	}
	fs, dir := newFS(t, Options{Xattr: true, SecurityLabel: true, XattrMap: m})
	label := []byte("system_u:object_r:container_file_t:s0\x00")
	r := func() *fuseproto.Request {
		r := callerReq(fuseproto.RootID, 0, 0)
		r.Ext.SecCtx = []fuseproto.SecurityContext{{Name: "security.selinux", Value: label}}
		return r
	}
	var eout fuse.EntryOut
	var cout fuse.CreateOut
	if errno := fs.Create(r(), &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, "file", &cout); errno != 0 {
		t.Fatal(errno)
	}
	release(fs, fuseproto.NodeID(cout.NodeId), cout.Fh)
	if errno := fs.Mkdir(r(), &fuse.MkdirIn{Mode: 0o755}, "dir", &eout); errno != 0 {
		t.Fatal(errno)
	}
	if errno := fs.Symlink(r(), fuseproto.RootID, "link", "file", &eout); errno != 0 {
		t.Fatal(errno)
	}
	if errno := fs.Mknod(r(), &fuse.MknodIn{Mode: unix.S_IFIFO | 0o644}, "fifo", &eout); errno != 0 {
		t.Fatal(errno)
	}
	buf := make([]byte, 128)
	for _, name := range []string{"file", "dir", "link", "fifo"} {
		n, err := unix.Lgetxattr(filepath.Join(dir, name), "trusted.virtiofs.security.selinux", buf)
		if err != nil {
			t.Errorf("%s: label: %v", name, err)
		} else if !bytes.Equal(buf[:n], label) {
			t.Errorf("%s: label %q, want %q", name, buf[:n], label)
		}
	}
	// A label the map refuses: the node is not left behind.
	bad := callerReq(fuseproto.RootID, 0, 0)
	bad.Ext.SecCtx = []fuseproto.SecurityContext{{Name: "trusted.virtiofs.x", Value: label}}
	if errno := fs.Mkdir(bad, &fuse.MkdirIn{Mode: 0o755}, "refused", &eout); errno != syscall.EPERM {
		t.Fatalf("mkdir with a refused label name: %v, want EPERM", errno)
	}
	mustNotExist(t, filepath.Join(dir, "refused"))
}
