package vm

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// guestModulesDir is where the initramfs holds the kernel modules.
const guestModulesDir = "/lib/ferryfs-modules"

// initramfs describes a guest's initramfs.
type initramfs struct {
	assets *Assets
	tag    string            // virtio-fs tag to mount on /mnt
	files  map[string]string // guest path -> host path of extra files (made executable)
	cmds   []string          // shell commands /init runs in order
}

// write writes the gzip-compressed newc cpio archive to dst.
func (r *initramfs) write(dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("creating the initramfs: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	// Speed over size: the archive is read once, from local disk.
	gz, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		f.Close()
		return err
	}
	if err := r.writeCpio(&cpioWriter{w: gz}); err != nil {
		f.Close()
		return fmt.Errorf("writing the initramfs: %w", err)
	}
	for _, step := range []func() error{gz.Close, bw.Flush, f.Close} {
		if err := step(); err != nil {
			return fmt.Errorf("writing the initramfs: %w", err)
		}
	}
	return nil
}

// writeCpio adds every member, directories first.
func (r *initramfs) writeCpio(c *cpioWriter) error {
	dirs := map[string]bool{}
	var mkdirAll func(dir string)
	mkdirAll = func(dir string) {
		if dir == "/" || dir == "." || dirs[dir] {
			return
		}
		mkdirAll(path.Dir(dir))
		dirs[dir] = true
		c.add(cpioEntry{name: dir[1:], mode: syscall.S_IFDIR | 0o755})
	}
	file := func(guest string, mode uint32, data []byte) {
		mkdirAll(path.Dir(guest))
		c.add(cpioEntry{name: guest[1:], mode: syscall.S_IFREG | mode, data: data})
	}
	hostFile := func(guest, host string) error {
		data, err := os.ReadFile(host)
		if err != nil {
			return fmt.Errorf("reading %s for the initramfs: %w", host, err)
		}
		file(guest, 0o755, data)
		return nil
	}

	for _, d := range []string{"/bin", "/dev", "/proc", "/sys", "/mnt", "/tmp", "/etc", "/root"} {
		mkdirAll(d)
	}
	// The kernel opens /dev/console as init's stdin, stdout and stderr.
	c.add(cpioEntry{name: "dev/console", mode: syscall.S_IFCHR | 0o600, major: 5, minor: 1})
	if err := hostFile("/bin/busybox", r.assets.Busybox); err != nil {
		return err
	}
	// /init's interpreter; /init installs the other applets.
	c.add(cpioEntry{name: "bin/sh", mode: syscall.S_IFLNK | 0o777, data: []byte("busybox")})
	file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	file("/etc/group", 0o644, []byte("root:x:0:\n"))
	for _, m := range r.assets.Modules {
		if err := hostFile(path.Join(guestModulesDir, m+".ko"), r.assets.ModulePath(m)); err != nil {
			return err
		}
	}
	guestPaths := make([]string, 0, len(r.files))
	for g := range r.files {
		guestPaths = append(guestPaths, g)
	}
	sort.Strings(guestPaths)
	for _, g := range guestPaths {
		if !strings.HasPrefix(g, "/") || path.Clean(g) != g {
			return fmt.Errorf("guest path %q is not absolute and clean", g)
		}
		if err := hostFile(g, r.files[g]); err != nil {
			return err
		}
	}
	for i, cmd := range r.cmds {
		file(commandPath(i), 0o755, []byte("#!/bin/sh\n"+cmd+"\n"))
	}
	file("/init", 0o755, []byte(initScript(r.assets.Modules, r.tag, len(r.cmds))))
	return c.close()
}

// commandPath is where the initramfs holds command i's script.
func commandPath(i int) string { return fmt.Sprintf("/ferryfs-cmds/%03d.sh", i) }
