// Command guestctl is a small toolbox for the identity and attribute checks
// that ferryfs's test guests run (see tests/vm): busybox has no way to run a
// command as another user, nor to read or write arbitrary extended attributes
// and ACLs. Each subcommand exits 0 when it did what it was asked (or found
// what it was told to expect) and 1 otherwise, with a message on stderr.
//
//	guestctl as UID:GID[:SUPP,...] [umask=OOO] -- PROGRAM ARGS...
//	guestctl owner PATH UID GID          # lstat: expect this owner
//	guestctl mode PATH OOOO              # lstat: expect these permission bits (with setuid/setgid/sticky)
//	guestctl setxattr PATH NAME VALUE
//	guestctl getxattr PATH NAME VALUE    # expect this value
//	guestctl noxattr PATH NAME           # expect no such attribute
//	guestctl listxattr PATH [NAME,...]   # expect exactly these names
//	guestctl setcap PATH                 # a valid security.capability (cap_net_raw+ep)
//	guestctl setacl PATH access|default ENTRY,...   # entries u::rw,u:1234:r,g::-,g:5:rx,m::r,o::-
//
// It is built with CGO_ENABLED=0 so that it needs nothing from the guest.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "guestctl %s: %v\n", strings.Join(os.Args[1:], " "), err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("no subcommand")
	}
	cmd, args := args[0], args[1:]
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %d arguments, got %d", cmd, n, len(args))
		}
		return nil
	}
	switch cmd {
	case "as":
		return runAs(args)
	case "owner":
		if err := want(3); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(args[0], &st); err != nil {
			return err
		}
		if got := fmt.Sprintf("%d %d", st.Uid, st.Gid); got != args[1]+" "+args[2] {
			return fmt.Errorf("owner %s, want %s %s", got, args[1], args[2])
		}
		return nil
	case "mode":
		if err := want(2); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(args[0], &st); err != nil {
			return err
		}
		wantMode, err := strconv.ParseUint(args[1], 8, 32)
		if err != nil {
			return err
		}
		if got := st.Mode & 0o7777; uint64(got) != wantMode {
			return fmt.Errorf("mode %o, want %o", got, wantMode)
		}
		return nil
	case "setxattr":
		if err := want(3); err != nil {
			return err
		}
		return unix.Lsetxattr(args[0], args[1], []byte(args[2]), 0)
	case "getxattr":
		if err := want(3); err != nil {
			return err
		}
		buf := make([]byte, 64<<10)
		n, err := unix.Lgetxattr(args[0], args[1], buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != args[2] {
			return fmt.Errorf("value %q, want %q", buf[:n], args[2])
		}
		return nil
	case "noxattr":
		if err := want(2); err != nil {
			return err
		}
		_, err := unix.Lgetxattr(args[0], args[1], nil)
		if err != unix.ENODATA {
			return fmt.Errorf("getxattr: %v, want ENODATA", err)
		}
		return nil
	case "listxattr":
		if len(args) < 1 || len(args) > 2 {
			return errors.New("listxattr takes PATH [NAMES]")
		}
		buf := make([]byte, 64<<10)
		n, err := unix.Llistxattr(args[0], buf)
		if err != nil {
			return err
		}
		var got []string
		for _, name := range bytes.Split(buf[:n], []byte{0}) {
			if len(name) > 0 {
				got = append(got, string(name))
			}
		}
		var wantNames []string
		if len(args) == 2 && args[1] != "" {
			wantNames = strings.Split(args[1], ",")
		}
		slices.Sort(got)
		slices.Sort(wantNames)
		if !slices.Equal(got, wantNames) {
			return fmt.Errorf("names %q, want %q", got, wantNames)
		}
		return nil
	case "setcap":
		if err := want(1); err != nil {
			return err
		}
		// struct vfs_cap_data, revision 2: magic_etc, then permitted
		// and inheritable for two 32-bit words.
		v := binary.LittleEndian.AppendUint32(nil, 0x02000000|0x000001) // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
		v = binary.LittleEndian.AppendUint32(v, 1<<13)                  // permitted: CAP_NET_RAW
		v = binary.LittleEndian.AppendUint32(v, 0)
		v = binary.LittleEndian.AppendUint32(v, 0)
		v = binary.LittleEndian.AppendUint32(v, 0)
		return unix.Lsetxattr(args[0], "security.capability", v, 0)
	case "setacl":
		if err := want(3); err != nil {
			return err
		}
		name := map[string]string{"access": "system.posix_acl_access", "default": "system.posix_acl_default"}[args[1]]
		if name == "" {
			return fmt.Errorf("ACL kind %q: want access or default", args[1])
		}
		value, err := encodeACL(args[2])
		if err != nil {
			return err
		}
		return unix.Lsetxattr(args[0], name, value, 0)
	}
	return fmt.Errorf("unknown subcommand %q", cmd)
}

// runAs execs a program with other credentials and umask.
func runAs(args []string) error {
	sep := slices.Index(args, "--")
	if sep < 1 || sep == len(args)-1 {
		return errors.New("usage: as UID:GID[:SUPP,...] [umask=OOO] -- PROGRAM [ARGS]")
	}
	ids := strings.Split(args[0], ":")
	if len(ids) < 2 || len(ids) > 3 {
		return fmt.Errorf("ids %q: want UID:GID[:SUPP,...]", args[0])
	}
	uid, err := strconv.Atoi(ids[0])
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(ids[1])
	if err != nil {
		return err
	}
	groups := []int{}
	if len(ids) == 3 && ids[2] != "" {
		for _, s := range strings.Split(ids[2], ",") {
			g, err := strconv.Atoi(s)
			if err != nil {
				return err
			}
			groups = append(groups, g)
		}
	}
	for _, opt := range args[1:sep] {
		v, ok := strings.CutPrefix(opt, "umask=")
		if !ok {
			return fmt.Errorf("unknown option %q", opt)
		}
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil {
			return err
		}
		syscall.Umask(int(m))
	}
	prog, err := exec.LookPath(args[sep+1])
	if err != nil {
		return err
	}
	// Go's syscall.Set* change every thread of the process.
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	return syscall.Exec(prog, args[sep+1:], os.Environ())
}

// encodeACL encodes a short-form ACL ("u::rw,u:1234:r,g::-,m::r,o::-") in
// the system.posix_acl_* attribute format, entries sorted as the kernel
// requires.
func encodeACL(spec string) ([]byte, error) {
	tags := map[string][2]uint16{"u": {0x01, 0x02}, "g": {0x04, 0x08}, "m": {0x10, 0x10}, "o": {0x20, 0x20}}
	type entry struct {
		tag  uint16
		perm uint16
		id   uint32
	}
	var entries []entry
	for _, e := range strings.Split(spec, ",") {
		f := strings.Split(e, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("ACL entry %q: want TYPE:ID:PERMS", e)
		}
		t, ok := tags[f[0]]
		if !ok {
			return nil, fmt.Errorf("ACL entry %q: type u, g, m or o", e)
		}
		en := entry{tag: t[0], id: 0xffffffff}
		if f[1] != "" {
			id, err := strconv.ParseUint(f[1], 10, 32)
			if err != nil {
				return nil, err
			}
			en.tag, en.id = t[1], uint32(id)
		}
		for _, c := range f[2] {
			switch c {
			case 'r':
				en.perm |= 4
			case 'w':
				en.perm |= 2
			case 'x':
				en.perm |= 1
			case '-':
			default:
				return nil, fmt.Errorf("ACL entry %q: perms from r, w, x, -", e)
			}
		}
		entries = append(entries, en)
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if a.tag != b.tag {
			return int(a.tag) - int(b.tag)
		}
		return int(int64(a.id) - int64(b.id))
	})
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b, nil
}
