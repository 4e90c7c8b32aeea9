package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The identity and attribute mapping checks (issue 4): each boots a guest
// against a daemon started with mapping flags, runs guestctl commands that
// each check what the guest sees (exit status 0 = as expected), and then
// checks what landed on the host.

// mappingFlags are the same for ferryfs and virtiofsd 1.13: ids
// 1000-1009 map to 101000-101009 both ways, guest ids 2000-2009 are
// squashed to 65534, guest uid 3000 is forbidden; every guest attribute
// name is stored under user.virtiofs., except security.selinux, which goes
// to trusted.virtiofs.security.selinux (an SELinux-style remap: the guest's
// labels never become the host's).
var mappingFlags = []string{
	"--translate-uid=map:1000:101000:10", "--translate-uid=squash-guest:2000:65534:10", "--translate-uid=forbid-guest:3000:1",
	"--translate-gid=map:1000:101000:10", "--translate-gid=squash-guest:2000:65534:10",
	"--xattrmap=:prefix:all:security.selinux:trusted.virtiofs.::map::user.virtiofs.:",
}

// hostExpect is what one guest command must have left on the host.
type hostExpect struct {
	path     string // relative to the shared directory
	absent   bool
	uid, gid int    // -1: not checked
	mode     uint32 // permission bits with setuid/setgid/sticky; 0: not checked
	xattr    string // an attribute that must have value
	value    string
	noXattr  string // an attribute that must be absent
	hasXattr string // an attribute that must exist, any value
}

// guestCheck is one guest command and what it must leave on the host.
type guestCheck struct {
	name string
	cmd  string
	host []hostExpect
}

func identityChecks() []guestCheck {
	ctl := GuestCtl
	return []guestCheck{
		{"create as a mapped user", ctl + " as 1000:1000 -- touch /mnt/by1000 && " + ctl + " owner /mnt/by1000 1000 1000",
			[]hostExpect{{path: "by1000", uid: 101000, gid: 101000}}},
		{"mkdir as a mapped user", ctl + " as 1001:1002 -- mkdir /mnt/dir1001 && " + ctl + " owner /mnt/dir1001 1001 1002",
			[]hostExpect{{path: "dir1001", uid: 101001, gid: 101002}}},
		{"symlink as a mapped user", ctl + " as 1003:1003 -- ln -s by1000 /mnt/link1003 && " + ctl + " owner /mnt/link1003 1003 1003",
			[]hostExpect{{path: "link1003", uid: 101003, gid: 101003}}},
		{"chown in the guest", "touch /mnt/chowned && chown 1004:1005 /mnt/chowned && " + ctl + " owner /mnt/chowned 1004 1005",
			[]hostExpect{{path: "chowned", uid: 101004, gid: 101005}}},
		{"squashed user", ctl + " as 2005:2006 -- touch /mnt/squashed && " + ctl + " owner /mnt/squashed 65534 65534",
			[]hostExpect{{path: "squashed", uid: 65534, gid: 65534}}},
		{"forbidden user", "! " + ctl + " as 3000:1000 -- touch /mnt/forbidden",
			[]hostExpect{{path: "forbidden", absent: true}}},
		{"host owner seen as the guest id", ctl + " owner /mnt/hostowned 1007 1008", nil},
		{"unmapped ids pass through", ctl + " as 500:500 -- touch /mnt/by500 && " + ctl + " owner /mnt/by500 500 500",
			[]hostExpect{{path: "by500", uid: 500, gid: 500}}},
		{"user xattr mapped", "touch /mnt/xa && " + ctl + " setxattr /mnt/xa user.foo bar && " + ctl + " getxattr /mnt/xa user.foo bar && " + ctl + " listxattr /mnt/xa user.foo",
			[]hostExpect{{path: "xa", uid: -1, gid: -1, xattr: "user.virtiofs.user.foo", value: "bar", noXattr: "user.foo"}}},
		{"host attributes hidden", ctl + " listxattr /mnt/hostattrs user.shown && " + ctl + " noxattr /mnt/hostattrs user.hidden", nil},
		{"selinux label remapped", "touch /mnt/labelled && " + ctl + " setxattr /mnt/labelled security.selinux system_u:object_r:guest_t:s0 && " +
			ctl + " getxattr /mnt/labelled security.selinux system_u:object_r:guest_t:s0",
			[]hostExpect{{path: "labelled", uid: -1, gid: -1, xattr: "trusted.virtiofs.security.selinux", value: "system_u:object_r:guest_t:s0", noXattr: "security.selinux"}}},
		{"security.capability remapped and cleared on write", "touch /mnt/capfile && " + ctl + " setcap /mnt/capfile && " +
			ctl + " listxattr /mnt/capfile security.capability && echo data >> /mnt/capfile && " + ctl + " listxattr /mnt/capfile",
			[]hostExpect{{path: "capfile", uid: -1, gid: -1, noXattr: "user.virtiofs.security.capability"}}},
	}
}

// aclChecks run with --posix-acl.
func aclChecks() []guestCheck {
	ctl := GuestCtl
	return []guestCheck{
		{"access ACL enforced", "echo secret > /mnt/aclfile && chmod 600 /mnt/aclfile && " +
			ctl + " setacl /mnt/aclfile access u::rw,u:1234:r,g::-,m::r,o::- && " +
			ctl + " as 1234:1234 -- cat /mnt/aclfile && ! " + ctl + " as 1235:1235 -- cat /mnt/aclfile",
			[]hostExpect{{path: "aclfile", uid: -1, gid: -1, hasXattr: "system.posix_acl_access"}}},
		{"default ACL replaces the umask", "mkdir /mnt/dacl && " + ctl + " setacl /mnt/dacl default u::rwx,g::rwx,o::rx && " +
			ctl + " as 0:0 umask=077 -- touch /mnt/dacl/f && " + ctl + " mode /mnt/dacl/f 664",
			[]hostExpect{{path: "dacl/f", uid: -1, gid: -1, mode: 0o664}}},
		{"umask without a default ACL", ctl + " as 0:0 umask=027 -- mkdir /mnt/masked && " + ctl + " mode /mnt/masked 750",
			[]hostExpect{{path: "masked", uid: -1, gid: -1, mode: 0o750}}},
		{"ACL clears setgid for a non-member", "touch /mnt/sgid && chown 1234:0 /mnt/sgid && chmod 2775 /mnt/sgid && " +
			ctl + " as 1234:1234 -- " + ctl + " setacl /mnt/sgid access u::rwx,g::rx,o::rx && " + ctl + " mode /mnt/sgid 755",
			[]hostExpect{{path: "sgid", uid: -1, gid: -1, mode: 0o755}}},
	}
}

func TestGuestIdentityFerryfs(t *testing.T) {
	RequireVM(t)
	runGuestChecks(t, Ferryfs{Binary: BuildFerryfs(t), Flags: mappingFlags}, identityChecks(), prepareIdentityShare)
}

func TestGuestIdentityVirtiofsd(t *testing.T) {
	// virtiofsd drops CAP_SYS_ADMIN unless told to keep it, and trusted.*
	// needs it; its documentation pairs the SELinux remap with this flag.
	// (ferryfs drops no capability.)
	flags := append([]string{"--modcaps=+sys_admin"}, mappingFlags...)
	runGuestChecks(t, Virtiofsd{Flags: flags}, identityChecks(), prepareIdentityShare)
}

func TestGuestACLFerryfs(t *testing.T) {
	RequireVM(t)
	runGuestChecks(t, Ferryfs{Binary: BuildFerryfs(t), Flags: []string{"--posix-acl"}}, aclChecks(), nil)
}

func TestGuestACLVirtiofsd(t *testing.T) {
	runGuestChecks(t, Virtiofsd{Flags: []string{"--posix-acl"}}, aclChecks(), nil)
}

// prepareIdentityShare puts in the shared directory what the identity
// checks find there: a file owned by host ids inside the mapped range, and
// one with host attributes that the map shows and hides.
func prepareIdentityShare(t *testing.T, shared string) {
	owned := filepath.Join(shared, "hostowned")
	if err := os.WriteFile(owned, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, 101007, 101008); err != nil {
		t.Fatal(err)
	}
	attrs := filepath.Join(shared, "hostattrs")
	if err := os.WriteFile(attrs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{"user.virtiofs.user.shown": "s", "user.hidden": "h"} {
		if err := unix.Setxattr(attrs, name, []byte(value), 0); err != nil {
			t.Fatalf("host xattr %s: %v", name, err)
		}
	}
}

// runGuestChecks boots one guest against daemon, runs every check's
// command and then checks the host side of each.
func runGuestChecks(t *testing.T, daemon Daemon, checks []guestCheck, prepare func(*testing.T, string)) {
	a := LoadAssets(t)
	files := GuestBinaries(t)
	run := NewRun(t, a, "")
	// Guest users other than root create files at the top.
	if err := os.Chmod(run.SharedDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(t, run.SharedDir)
	}
	cmds := make([]string, len(checks))
	for i, c := range checks {
		cmds[i] = c.cmd
	}
	res, err := Boot(t, BootOptions{Run: run, Daemon: daemon, Files: files, Commands: cmds})
	if err != nil {
		t.Fatalf("guest run: %v", err)
	}
	if res.DaemonErr != nil {
		t.Errorf("%s: %v", daemon.Name(), res.DaemonErr)
	}
	for i, c := range checks {
		if i >= len(res.Commands) || !res.Commands[i].Started {
			t.Errorf("%s: the guest did not run %q", c.name, c.cmd)
			continue
		}
		if rc := res.Commands[i].ExitCode; rc != 0 {
			t.Errorf("%s: guest command failed (exit status %d): %s", c.name, rc, c.cmd)
		}
		for _, h := range c.host {
			checkHost(t, c.name, filepath.Join(run.SharedDir, h.path), h)
		}
	}
	if t.Failed() {
		t.Logf("guest console (guestctl explains each failure):\n%s", tail(res.Console, 60))
	}
}

func checkHost(t *testing.T, name, path string, h hostExpect) {
	t.Helper()
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if h.absent {
		if err == nil {
			t.Errorf("%s: %s exists on the host", name, path)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: on the host: %v", name, err)
		return
	}
	if h.uid >= 0 && (st.Uid != uint32(h.uid) || st.Gid != uint32(h.gid)) {
		t.Errorf("%s: host owner %d:%d, want %d:%d", name, st.Uid, st.Gid, h.uid, h.gid)
	}
	if h.mode != 0 && st.Mode&0o7777 != h.mode {
		t.Errorf("%s: host mode %o, want %o", name, st.Mode&0o7777, h.mode)
	}
	buf := make([]byte, 4096)
	if h.xattr != "" {
		n, err := unix.Lgetxattr(path, h.xattr, buf)
		if err != nil || string(buf[:max(n, 0)]) != h.value {
			t.Errorf("%s: host attribute %s: %q, %v; want %q", name, h.xattr, buf[:max(n, 0)], err, h.value)
		}
	}
	if h.noXattr != "" {
		if _, err := unix.Lgetxattr(path, h.noXattr, buf); err != unix.ENODATA {
			t.Errorf("%s: host attribute %s: %v, want none", name, h.noXattr, err)
		}
	}
	if h.hasXattr != "" {
		if _, err := unix.Lgetxattr(path, h.hasXattr, buf); err != nil {
			t.Errorf("%s: host attribute %s: %v", name, h.hasXattr, err)
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
