package passthrough

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
)

// TestSetAttrAsCaller: SETATTR is checked as the guest caller, as a local
// file system checks it: a user who does not own a file may not set its
// times or mode, may touch it only with write permission, and may not
// truncate it without; an owner may not give the file away; a mode change
// by someone outside the file's group drops setgid. Root may do it all.
func TestSetAttrAsCaller(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("switching to the caller's identity needs root")
	}
	const owner, other, ownerGroup, otherGroup = 1000, 2000, 1000, 3000
	tests := []struct {
		name     string
		uid, gid uint32
		mode     uint32 // of the file, owned by owner:ownerGroup
		in       fuse.SetAttrIn
		want     syscall.Errno
		wantMode uint32 // the file's mode afterwards, when not 0
	}{
		{"other sets explicit times", other, otherGroup, 0o666, setTimes(), syscall.EPERM, 0},
		{"other touches a file it cannot write", other, otherGroup, 0o644, touch(), syscall.EACCES, 0},
		{"other touches a file it can write", other, otherGroup, 0o666, touch(), 0, 0},
		{"owner sets explicit times", owner, ownerGroup, 0o644, setTimes(), 0, 0},
		{"root sets explicit times", 0, 0, 0o644, setTimes(), 0, 0},
		{"other changes the mode", other, otherGroup, 0o666, chmod(0o777), syscall.EPERM, 0},
		{"owner gives the file away", owner, ownerGroup, 0o644, chown(other, ownerGroup), syscall.EPERM, 0},
		{"owner changes the group to one of its own", owner, ownerGroup, 0o644, chown(owner, ownerGroup), 0, 0},
		{"other truncates a file it cannot write", other, otherGroup, 0o644, truncateTo(0), syscall.EACCES, 0},
		{"other truncates a file it can write", other, otherGroup, 0o666, truncateTo(0), 0, 0},
		{"owner outside the group sets setgid", owner, otherGroup, 0o644, chmod(0o2755), 0, 0o755},
		{"root sets setgid", 0, 0, 0o644, chmod(0o2755), 0, 0o2755},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, dir := newFS(t, Options{})
			path := filepath.Join(dir, "f")
			writeHostFile(t, path, "content")
			if err := os.Chown(path, owner, ownerGroup); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, os.FileMode(tt.mode)); err != nil {
				t.Fatal(err)
			}
			var before unix.Stat_t
			unix.Stat(path, &before)
			node := mustLookup(t, fs, fuseproto.RootID, "f")
			r := &fuseproto.Request{Header: fuse.InHeader{NodeId: uint64(node), Caller: fuse.Caller{Owner: fuse.Owner{Uid: tt.uid, Gid: tt.gid}}}}
			in := tt.in
			var out fuse.AttrOut
			if errno := fs.SetAttr(r, &in, &out); errno != tt.want {
				t.Fatalf("SetAttr as %d:%d: %v, want %v", tt.uid, tt.gid, errno, tt.want)
			}
			var after unix.Stat_t
			unix.Stat(path, &after)
			if tt.want != 0 && (after.Mtim != before.Mtim || after.Mode != before.Mode || after.Uid != before.Uid || after.Size != before.Size) {
				t.Errorf("a refused SETATTR changed the file: %+v -> %+v", before, after)
			}
			if tt.wantMode != 0 && after.Mode&0o7777 != tt.wantMode {
				t.Errorf("mode %#o, want %#o", after.Mode&0o7777, tt.wantMode)
			}
		})
	}
}

func setTimes() fuse.SetAttrIn {
	var in fuse.SetAttrIn
	in.Valid = fuse.FATTR_ATIME | fuse.FATTR_MTIME
	in.Atime, in.Mtime = 1e9, 1e9
	return in
}

func touch() fuse.SetAttrIn {
	var in fuse.SetAttrIn
	in.Valid = fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW
	return in
}

func chmod(mode uint32) fuse.SetAttrIn {
	var in fuse.SetAttrIn
	in.Valid, in.Mode = fuse.FATTR_MODE, unix.S_IFREG|mode
	return in
}

func chown(uid, gid uint32) fuse.SetAttrIn {
	var in fuse.SetAttrIn
	in.Valid, in.Uid, in.Gid = fuse.FATTR_UID|fuse.FATTR_GID, uid, gid
	return in
}

func truncateTo(size uint64) fuse.SetAttrIn {
	var in fuse.SetAttrIn
	in.Valid, in.Size = fuse.FATTR_SIZE, size
	return in
}
