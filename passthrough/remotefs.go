package passthrough

import (
	"fmt"
	"os"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// File systems whose calls may block without bound, because a server
// elsewhere (a network peer, a FUSE daemon) answers them: the request path
// makes its calls on them as ordinary system calls (rawsys.UseOrdinaryCalls),
// so that one hung server stops only the requests that wait for it.
var (
	// mayHangMagic are their statfs magic numbers.
	mayHangMagic = map[int64]string{
		0x6969:     "nfs",
		0x65735546: "fuse", // virtiofs too
		0xff534d42: "cifs",
		0xfe534d42: "smb2",
		0x517b:     "smb",
		0x01021997: "9p",
		0x00c36400: "ceph",
		0x5346414f: "afs",
		0x6b414653: "afs",
		0x73757245: "coda",
		0x01161970: "gfs2",
		0x7461636f: "ocfs2",
		0x0bd00bd0: "lustre",
	}
	// mayHangTypes are their types as /proc/self/mountinfo names them
	// (and any fuse.* subtype).
	mayHangTypes = map[string]bool{
		"nfs": true, "nfs4": true, "fuse": true, "fuseblk": true, "virtiofs": true, "cifs": true, "smb3": true,
		"smbfs": true, "9p": true, "ceph": true, "afs": true, "coda": true, "gfs2": true, "ocfs2": true, "lustre": true,
	}
)

// mayHangFS names the file system of the object open at fd if its calls
// may block without bound, and returns "" otherwise.
func mayHangFS(fd int) string {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return ""
	}
	return mayHangMagic[int64(st.Type)]
}

// mayHangBelow names the first mount at or below dir (a path) whose calls
// may block without bound, from the mount table in mountinfo, and returns
// "" when there is none.
func mayHangBelow(mountinfoPath, dir string) (string, error) {
	f, err := os.Open(mountinfoPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	mounts, err := mountinfo.GetMountsFromReader(f, mountinfo.PrefixFilter(dir))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", mountinfoPath, err)
	}
	for _, m := range mounts {
		if mayHangTypes[m.FSType] || strings.HasPrefix(m.FSType, "fuse.") {
			return fmt.Sprintf("%s at %s", m.FSType, m.Mountpoint), nil
		}
	}
	return "", nil
}

// watchForHangingFS turns ordinary calls on at start when the shared
// directory is on, or has below it, a file system that may hang
// (mayHangFS).
func (fs *FS) watchForHangingFS(rootFD int) {
	why := mayHangFS(rootFD)
	if why == "" {
		if root, err := fs.readLink(rootFD); err == nil {
			why, _ = mayHangBelow("/proc/self/mountinfo", root)
		}
	}
	if why != "" {
		fs.useOrdinaryCalls(why)
	}
}

// checkMount is the same check for an object found on a mount the daemon
// has not seen yet (mounted below the shared directory since the start).
func (fs *FS) checkMount(fd int, mountID uint64) {
	if mountID == fs.rootMount || rawsys.OrdinaryCalls() {
		return
	}
	if _, seen := fs.seenMounts.LoadOrStore(mountID, true); seen {
		return
	}
	if why := mayHangFS(fd); why != "" {
		fs.useOrdinaryCalls(fmt.Sprintf("%s, mount %d", why, mountID))
	}
}

func (fs *FS) useOrdinaryCalls(why string) {
	if !rawsys.OrdinaryCalls() {
		fs.log.Info("a file system below the shared directory may block without bound; requests use ordinary system calls", "fs", why)
	}
	rawsys.UseOrdinaryCalls()
}
