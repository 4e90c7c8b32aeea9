// Package vm boots real Linux guests under QEMU with a virtio-fs device and
// runs programs in them, for ferryfs's end-to-end tests.
//
// # Pieces
//
//   - Assets (assets.go): QEMU 10 and Rust virtiofsd 1.13 in a Debian trixie
//     chroot, a bookworm guest kernel with its virtio-fs modules, and a
//     static busybox. scripts/e2e-assets.sh prepares and caches them (by
//     default in /var/cache/ferryfs-e2e); LoadAssets runs it, so a test
//     installs what it needs.
//   - Run (run.go): one test's host directory, seen inside the chroot as
//     /e2e, holding sockets, logs, the initramfs and (by default) the shared
//     directory.
//   - Daemon (daemon.go): a vhost-user-fs back-end serving the shared
//     directory on a socket in the run directory: Virtiofsd (the reference,
//     run inside the chroot) or Ferryfs (a host binary).
//   - Initramfs (initramfs.go, initscript.go): busybox, the modules, the
//     guest programs (GuestBinaries: tests/guest/...) and an /init that
//     mounts virtio-fs on /mnt, runs the test's commands and powers off.
//   - Boot / Start (boot.go, qemu.go): runs QEMU from the chroot against a
//     daemon, captures the serial console, enforces a timeout, and parses
//     what the guest printed (results.go). Start returns a running Machine,
//     which can be driven over QMP (qmp.go) before Wait, e.g. to migrate.
//
// Daemon.Start takes the Run rather than bare paths, because a chrooted
// daemon needs the run's path translation, and returns a *Process rather
// than a stop function, because benchmarks read the daemon's CPU time
// (Process.CPUTime) after it has stopped.
//
// # Paths inside and outside the chroot
//
// QEMU and virtiofsd run chrooted into the trixie tree; a ferryfs daemon
// runs on the host. All of them must reach the same vhost-user socket and
// the same shared directory. Each chrooted process is started in its own
// private mount namespace (unshare -m --propagation private) in which /proc
// and /dev are bound into the chroot and the run directory is bound onto
// the chroot's empty /e2e (and an outside shared directory onto
// /e2e/shared). The mounts vanish with the process, nothing is written into
// the cached chroot, and concurrent runs do not see each other's /e2e. A
// socket created by a host daemon in the run directory is the same inode the
// chrooted QEMU finds under /e2e, so host and chroot daemons are
// interchangeable. Run.ChrootPath translates a host path to the chroot's
// view.
//
// # Requirements
//
// Root (debootstrap, chroot, mount namespaces), network access to Debian's
// mirror the first time, and about 400 MB in the cache. Guests run under
// TCG (-accel tcg -cpu max): on the machines this was written on /dev/kvm
// opens but guests hang right after the kernel starts. Without root the
// tests skip, unless FERRYFS_REQUIRE_VM_TESTS=1 or
// FERRYFS_REQUIRE_MOUNT_TESTS=1 (set by scripts/test-all.sh) turns the
// skip into a failure; -short skips them too.
package vm
