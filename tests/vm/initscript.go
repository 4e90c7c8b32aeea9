package vm

import (
	"fmt"
	"strings"
)

// Markers /init prints on the serial console, parsed by results.go. Each
// stands at the start of its own line.
const (
	markerBooted   = "FERRYFS-BOOTED"     // /init started
	markerInitFail = "FERRYFS-INIT-FAIL"  // followed by what failed; the guest powers off
	markerMounted  = "FERRYFS-MOUNTED"    // virtio-fs is mounted on /mnt
	markerCmdBegin = "FERRYFS-CMD-BEGIN"  // followed by the command's index
	markerCmdEnd   = "FERRYFS-CMD-END"    // followed by the index and rc=<exit status>
	markerUmount   = "FERRYFS-UMOUNT"     // followed by rc=<umount's exit status>
	markerEnd      = "FERRYFS-GUEST-END"  // /init is about to power off
	guestMountDir  = "/mnt"               // where /init mounts virtio-fs
	initFailPrefix = markerInitFail + " " // what follows names the failed step
)

// initScript returns the guest's /init: mount the pseudo file systems, load
// the modules in order, mount virtio-fs with tag on /mnt, run the n command
// scripts in order (each in its own shell, so one failing does not stop the
// next), unmount, and power off. Any failure before the commands prints
// FERRYFS-INIT-FAIL and powers off at once: with -no-reboot QEMU then exits,
// so the host never waits for its timeout on a broken guest.
func initScript(modules []string, tag string, n int) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root TMPDIR=/tmp
fail() {
	echo "` + initFailPrefix + `$*"
	poweroff -f
}
mount -t proc proc /proc || fail mount proc
mount -t sysfs sysfs /sys || fail mount sysfs
mount -t devtmpfs devtmpfs /dev || fail mount devtmpfs
# devtmpfs lacks the /dev/fd links (posixtest's FdLeak lists /dev/fd).
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
echo ` + markerBooted + `
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod %s/%s.ko || fail insmod %s\n", guestModulesDir, m, m)
	}
	fmt.Fprintf(&b, "mount -t virtiofs %s %s || fail mount -t virtiofs %s %s\n", shellQuote(tag), guestMountDir, shellQuote(tag), guestMountDir)
	b.WriteString("echo " + markerMounted + "\n")
	for i := range n {
		fmt.Fprintf(&b, "echo %s %d\n/bin/sh %s\necho \"%s %d rc=$?\"\n", markerCmdBegin, i, commandPath(i), markerCmdEnd, i)
	}
	fmt.Fprintf(&b, `cd /
umount %s
echo "%s rc=$?"
echo %s
poweroff -f
`, guestMountDir, markerUmount, markerEnd)
	return b.String()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
