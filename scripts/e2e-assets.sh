#!/usr/bin/env bash
# e2e-assets.sh prepares what ferryfs's virtual-machine tests (tests/vm) need,
# from Debian's packages only, and caches it outside the repository:
#
#   - a Debian trixie chroot (debootstrap --variant=minbase) with QEMU 10
#     (qemu-system-x86) and the reference daemon, Rust virtiofsd 1.13
#     (/usr/libexec/virtiofsd), plus an empty directory /e2e in it that the
#     tests bind-mount their run directories onto;
#   - a guest kernel (vmlinuz) and the modules virtio-fs needs, extracted from
#     bookworm's linux-image-6.1.0-*-amd64 with dpkg -x (never installed);
#   - a static busybox for the guest's initramfs, extracted from busybox-static.
#
# It then writes $CACHE/env (KEY='value' lines, shell-sourceable) and prints
# it. Every part lives in a directory named after what it holds (suite and
# package list for the chroot, package name and version for the kernel and
# busybox), is built in a temporary directory and renamed into place only
# when complete, so a run that fails or is interrupted leaves no half-built
# asset behind and a later run starts again. Re-running with everything
# cached takes well under a second. Delete the cache directory to rebuild.
#
# Environment:
#   FERRYFS_E2E_CACHE   cache directory (default /var/cache/ferryfs-e2e)
#   FERRYFS_E2E_MIRROR  Debian mirror for the chroot (default http://deb.debian.org/debian)
#
# Needs root (debootstrap, chroot, mount namespaces) and network access to
# the Debian mirror on the first run. Host tools it lacks (debootstrap) are
# installed with apt-get.
set -euo pipefail

CACHE=${FERRYFS_E2E_CACHE:-/var/cache/ferryfs-e2e}
MIRROR=${FERRYFS_E2E_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
CHROOT_PACKAGES="qemu-system-x86 virtiofsd"
# CHROOT_MOUNTPOINT is the directory in the chroot that tests bind-mount
# their per-run host directory onto (in a private mount namespace).
CHROOT_MOUNTPOINT=/e2e
# Bump RECIPE when the way the chroot is built changes, so caches rebuild.
RECIPE=1
# Guest kernel modules, in the order the guest must insmod them.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci fuse virtiofs"

START=$(date +%s.%N)
TMPDIRS=()

log() { echo "e2e-assets: $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# mounted_under DIR succeeds if anything is mounted at or below DIR in this
# mount namespace.
mounted_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# cleanup removes this run's temporary directories, but never one with
# something mounted in it: deleting a chroot with /proc or /dev bound into it
# would delete (or, copying, fill the disk with) the host's /proc and /dev.
# All mounts this script makes live in private mount namespaces that end
# with their commands, so this is a last line of defence.
cleanup() {
	local d
	for d in "${TMPDIRS[@]}"; do
		[ -e "$d" ] || continue
		if mounted_under "$d"; then
			log "WARNING: not removing $d: something is still mounted below it"
		else
			rm -rf --one-file-system -- "$d"
		fi
	done
}
trap cleanup EXIT
# Make INT, TERM and HUP run the EXIT trap too.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# remove_stale removes temporary directories that a killed earlier run left.
# It runs under the cache lock, so no running instance owns them.
remove_stale() {
	local d
	for d in "$CACHE"/.tmp.*; do
		[ -e "$d" ] || continue
		if mounted_under "$d"; then
			log "WARNING: not removing stale $d: something is mounted below it"
		else
			log "removing stale $d"
			rm -rf --one-file-system -- "$d"
		fi
	done
}

# new_tmp PURPOSE creates a temporary directory inside the cache (so the
# final rename stays on one file system) and sets TMP to its path. (It sets a
# variable rather than printing, so that cleanup learns of the directory:
# a $(...) subshell could not add to TMPDIRS.)
new_tmp() {
	TMP=$(mktemp -d "$CACHE/.tmp.$1.XXXXXX")
	TMPDIRS+=("$TMP")
}

# ensure_tool CMD PACKAGE installs PACKAGE with apt-get if CMD is missing.
ensure_tool() {
	command -v "$1" >/dev/null 2>&1 && return 0
	log "installing $2 (for $1)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2 ||
		die "apt-get install $2 failed"
	command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

# apt_show prints the Package, Version and Depends fields of the candidate
# versions of busybox-static and linux-image-amd64 (one apt-cache call: each
# takes about half a second on hosts without apt's binary cache).
apt_show() {
	apt-cache show --no-all-versions busybox-static linux-image-amd64 2>/dev/null |
		awk '$1 == "Package:" || $1 == "Version:" || $1 == "Depends:"'
}

# resolve_versions sets BUSYBOX_VERSION, KERNEL_PKG and KERNEL_VERSION from
# the host's apt lists, running apt-get update once if they lack the packages.
# The kernel is the one bookworm's linux-image-amd64 currently depends on.
resolve_versions() {
	local fields
	fields=$(apt_show)
	case $fields in *"Package: linux-image-amd64"*"Depends: linux-image-"*) ;; *)
		log "apt lists lack busybox-static or linux-image-amd64; running apt-get update"
		# Third-party sources may be unreachable; what matters is that
		# Debian's lists are fresh, which the check below verifies.
		apt-get update >&2 || log "apt-get update reported errors; continuing"
		fields=$(apt_show)
		;;
	esac
	BUSYBOX_VERSION=$(echo "$fields" | awk '$1 == "Package:" { p = $2 } p == "busybox-static" && $1 == "Version:" { print $2; exit }')
	local dep
	dep=$(echo "$fields" | awk '$1 == "Package:" { p = $2 } p == "linux-image-amd64" && $1 == "Depends:" { sub(/^Depends: */, ""); print; exit }')
	# dep looks like "linux-image-6.1.0-48-amd64 (= 6.1.172-1)".
	KERNEL_PKG=$(echo "$dep" | awk '{ print $1 }')
	KERNEL_VERSION=$(echo "$dep" | sed -n 's/^[^ ]* (= \([^)]*\)).*/\1/p')
	[ -n "$BUSYBOX_VERSION" ] || die "apt knows no busybox-static package"
	case $KERNEL_PKG in linux-image-*-amd64) ;; *) die "unexpected dependency of linux-image-amd64: '$dep'" ;; esac
	[ -n "$KERNEL_VERSION" ] || die "linux-image-amd64 does not pin a version of $KERNEL_PKG: '$dep'"
}

# deb_extract PACKAGE VERSION DIR downloads PACKAGE=VERSION with apt-get
# download and unpacks it into DIR with dpkg -x (nothing is installed).
deb_extract() {
	local dl
	new_tmp download
	dl=$TMP
	(cd "$dl" && apt-get -o APT::Sandbox::User=root download "$1=$2" >&2) ||
		die "apt-get download $1=$2 failed"
	local deb
	deb=$(ls "$dl"/*.deb) || die "apt-get download $1=$2 produced no .deb"
	dpkg -x "$deb" "$3" || die "dpkg -x $deb failed"
	rm -rf -- "$dl"
}

# safe_name turns a Debian version into a file-name component.
safe_name() { echo "$1" | tr -c 'A-Za-z0-9.+_\n-' '_'; }

# prepare_kernel sets KERNEL and MODULES_DIR, building them if needed.
prepare_kernel() {
	local pkg=$KERNEL_PKG ver=$KERNEL_VERSION dir tmp
	KERNEL_PACKAGE="$pkg=$ver"
	# The module list is part of the key: a changed list extracts again.
	dir="$CACHE/kernel/${pkg}_$(safe_name "$ver")_$(printf '%s' "$MODULES" | sha256sum | cut -c1-8)"
	if [ ! -f "$dir/STAMP" ]; then
		log "extracting guest kernel from $pkg $ver"
		mkdir -p "$CACHE/kernel"
		new_tmp kernel
		tmp=$TMP
		deb_extract "$pkg" "$ver" "$tmp/x"
		mkdir "$tmp/out" "$tmp/out/modules"
		local vmlinuz
		vmlinuz=$(ls "$tmp"/x/boot/vmlinuz-*) || die "$pkg has no /boot/vmlinuz-*"
		cp "$vmlinuz" "$tmp/out/vmlinuz"
		local m ko
		for m in $MODULES; do
			ko=$(find "$tmp"/x/lib/modules/*/kernel -name "$m.ko" -print -quit)
			[ -n "$ko" ] || die "$pkg has no $m.ko (compressed modules are not handled)"
			cp "$ko" "$tmp/out/modules/$m.ko"
		done
		printf 'package=%s\nversion=%s\nmodules=%s\n' "$pkg" "$ver" "$MODULES" >"$tmp/out/STAMP"
		mv -T "$tmp/out" "$dir"
	fi
	KERNEL="$dir/vmlinuz"
	MODULES_DIR="$dir/modules"
}

# prepare_busybox sets BUSYBOX, extracting it if needed.
prepare_busybox() {
	local ver=$BUSYBOX_VERSION dir tmp
	BUSYBOX_PACKAGE="busybox-static=$ver"
	dir="$CACHE/busybox/busybox-static_$(safe_name "$ver")"
	if [ ! -f "$dir/STAMP" ]; then
		log "extracting busybox-static $ver"
		mkdir -p "$CACHE/busybox"
		new_tmp busybox
		tmp=$TMP
		deb_extract busybox-static "$ver" "$tmp/x"
		mkdir "$tmp/out"
		cp "$tmp/x/bin/busybox" "$tmp/out/busybox" || die "busybox-static has no /bin/busybox"
		printf 'package=busybox-static\nversion=%s\n' "$ver" >"$tmp/out/STAMP"
		mv -T "$tmp/out" "$dir"
	fi
	BUSYBOX="$dir/busybox"
}

# in_chroot ROOT CMD... runs CMD in ROOT with /proc and /dev bound into it,
# inside a private mount namespace so the mounts end with the command.
in_chroot() {
	unshare -m --propagation private -- /bin/sh -c '
		set -e
		root=$1
		shift
		mount --bind /proc "$root/proc"
		mount --bind /dev "$root/dev"
		exec chroot "$root" "$@"
	' sh "$@"
}

# prepare_chroot sets CHROOT, building it if needed.
prepare_chroot() {
	local recipe key dir tmp
	recipe="recipe=$RECIPE suite=$SUITE variant=minbase mirror=$MIRROR packages=$CHROOT_PACKAGES mountpoint=$CHROOT_MOUNTPOINT"
	key=$(printf '%s' "$recipe" | sha256sum | cut -c1-12)
	dir="$CACHE/chroot-$SUITE-$key"
	if [ ! -f "$dir/.ferryfs-e2e-stamp" ]; then
		log "building the $SUITE chroot with $CHROOT_PACKAGES (a few minutes)"
		ensure_tool debootstrap debootstrap
		new_tmp chroot
		tmp=$TMP
		# debootstrap mounts /proc and /sys in the target while it works;
		# the private namespace guarantees they go away even if it fails.
		unshare -m --propagation private -- \
			debootstrap --variant=minbase "$SUITE" "$tmp/root" "$MIRROR" >&2 ||
			die "debootstrap $SUITE failed (log: $tmp/root/debootstrap/debootstrap.log)"
		in_chroot "$tmp/root" apt-get update >&2 || die "apt-get update in the chroot failed"
		in_chroot "$tmp/root" env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends $CHROOT_PACKAGES >&2 ||
			die "apt-get install $CHROOT_PACKAGES in the chroot failed"
		in_chroot "$tmp/root" apt-get clean >&2
		[ -x "$tmp/root/usr/bin/qemu-system-x86_64" ] || die "the chroot has no /usr/bin/qemu-system-x86_64"
		[ -x "$tmp/root/usr/libexec/virtiofsd" ] || die "the chroot has no /usr/libexec/virtiofsd"
		local devices
		devices=$(in_chroot "$tmp/root" /usr/bin/qemu-system-x86_64 -device help 2>&1) ||
			die "the chroot's QEMU does not run: $devices"
		case $devices in *'"vhost-user-fs-pci"'*) ;; *) die "the chroot's QEMU has no vhost-user-fs-pci device" ;; esac
		mkdir -p "$tmp/root$CHROOT_MOUNTPOINT"
		{
			echo "$recipe"
			chroot "$tmp/root" dpkg-query -W -f '${Package}=${Version}\n' $CHROOT_PACKAGES
		} >"$tmp/root/.ferryfs-e2e-stamp" || die "cannot record the chroot's package versions"
		mounted_under "$tmp" && die "something is still mounted below $tmp"
		mv -T "$tmp/root" "$dir"
	fi
	CHROOT=$dir
	QEMU_PACKAGE=$(awk -F= '$1 == "qemu-system-x86" { print $0 }' "$dir/.ferryfs-e2e-stamp")
	VIRTIOFSD_PACKAGE=$(awk -F= '$1 == "virtiofsd" { print $0 }' "$dir/.ferryfs-e2e-stamp")
}

# prepare_host_qemu installs bookworm's QEMU (7.2) on the host, the other
# front-end version the vhost-user back-end is tested with; HOST_QEMU and
# HOST_QEMU_PACKAGE name it.
prepare_host_qemu() {
	if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
		log "installing the host's qemu-system-x86 (QEMU 7.2)"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >&2 ||
			die "installing qemu-system-x86 on the host failed"
	fi
	HOST_QEMU=$(command -v qemu-system-x86_64)
	HOST_QEMU_PACKAGE="qemu-system-x86=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || echo unknown)"
}

# write_env writes $CACHE/env atomically and prints it.
write_env() {
	local tmp=$CACHE/.env.$$ k v
	: >"$tmp"
	for k in FERRYFS_E2E_CACHE CHROOT CHROOT_MOUNTPOINT QEMU VIRTIOFSD KERNEL MODULES_DIR MODULES BUSYBOX \
		KERNEL_PACKAGE BUSYBOX_PACKAGE QEMU_PACKAGE VIRTIOFSD_PACKAGE HOST_QEMU HOST_QEMU_PACKAGE; do
		v=${!k}
		case $v in *"'"* | *$'\n'*) die "value of $k contains a quote or newline: $v" ;; esac
		printf "%s='%s'\n" "$k" "$v" >>"$tmp"
	done
	mv -f "$tmp" "$CACHE/env"
	cat "$CACHE/env"
}

main() {
	[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount namespaces need it)"
	for t in apt-get apt-cache dpkg unshare chroot mount sha256sum flock; do
		command -v "$t" >/dev/null 2>&1 || die "missing host tool: $t"
	done
	mkdir -p "$CACHE"
	exec 9>"$CACHE/.lock"
	flock 9 || die "cannot lock $CACHE/.lock"
	remove_stale

	resolve_versions
	prepare_busybox
	prepare_kernel
	prepare_chroot
	prepare_host_qemu

	FERRYFS_E2E_CACHE=$CACHE
	QEMU=/usr/bin/qemu-system-x86_64
	VIRTIOFSD=/usr/libexec/virtiofsd
	write_env
	log "ready in $(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
}

main "$@"
