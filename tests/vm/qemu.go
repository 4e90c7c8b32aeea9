package vm

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// qemuArgs returns QEMU's command line, with paths as path makes them
// (as the chroot sees them, for the chroot's QEMU).
func qemuArgs(path func(string) (string, error), o *BootOptions, socket, kernel, initrd string) ([]string, error) {
	var paths []string
	for _, p := range []string{socket, kernel, initrd} {
		cp, err := path(p)
		if err != nil {
			return nil, err
		}
		paths = append(paths, cp)
	}
	mem := strconv.Itoa(o.MemMiB) + "M"
	args := []string{
		"-accel", "tcg", "-cpu", "max",
		"-smp", strconv.Itoa(o.VCPUs),
		"-m", mem,
		"-object", "memory-backend-memfd,id=mem,size=" + mem + ",share=on",
		"-numa", "node,memdev=mem",
		"-chardev", "socket,id=char0,path=" + paths[0],
		"-device", "vhost-user-fs-pci,queue-size=1024,chardev=char0,tag=" + o.Tag,
		"-nic", "none",
		"-nographic", "-no-reboot",
		"-kernel", paths[1],
		"-initrd", paths[2],
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 quiet " + o.KernelArgs),
	}
	if o.QMPSocket != "" {
		qmp, err := path(o.QMPSocket)
		if err != nil {
			return nil, err
		}
		args = append(args, "-qmp", "unix:"+qmp+",server=on,wait=off")
	}
	if o.Incoming {
		args = append(args, "-incoming", "defer")
	}
	return append(args, o.QEMUArgs...), nil
}

// linkOrCopy makes dst a hard link to src, or a copy across file systems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}
