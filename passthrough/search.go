package passthrough

import (
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/rawsys"
)

// searchPaths walks the shared directory breadth first and returns, for
// each key in want, the relative path of one name that leads to an object
// with that identity. It is find-paths' fallback for objects whose
// /proc/self/fd link names no path: the name the guest looked them up by
// was removed while another hard link remains. The walk stops as soon as
// every key is found; it never follows symbolic links and stays beneath
// the shared directory (openat2 RESOLVE_BENEATH). Directories it cannot
// read are skipped: the keys they hold stay unfound.
func (fs *FS) searchPaths(rootFD int, want map[inodestore.Key]bool) map[inodestore.Key]string {
	found := make(map[inodestore.Key]string, len(want))
	queue := []string{"."}
	for len(queue) > 0 && len(found) < len(want) {
		dir := queue[0]
		queue = queue[1:]
		names, dfd, err := readDirNames(rootFD, dir)
		if err != nil {
			continue
		}
		for _, name := range names {
			var stx unix.Statx_t
			if err := rawsys.Statx(dfd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_DONT_SYNC, inodestore.StatxMask, &stx); err != nil {
				continue
			}
			rel := path.Join(dir, name)
			k := inodestore.KeyOf(&stx)
			if want[k] {
				if _, dup := found[k]; !dup {
					found[k] = rel
				}
			}
			if stx.Mode&unix.S_IFMT == unix.S_IFDIR {
				queue = append(queue, rel)
			}
		}
		rawsys.Close(dfd)
	}
	return found
}

// readDirNames lists the directory rel beneath rootFD and returns its names
// and a descriptor of it, which the caller closes.
func readDirNames(rootFD int, rel string) ([]string, int, error) {
	fd, err := openBeneath(rootFD, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, -1, err
	}
	dup, err := unix.Dup(fd)
	if err != nil {
		rawsys.Close(fd)
		return nil, -1, fmt.Errorf("dup: %w", err)
	}
	f := os.NewFile(uintptr(dup), rel)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		rawsys.Close(fd)
		return nil, -1, err
	}
	return names, fd, nil
}
