// Package tests holds ferryfs's end-to-end tests: they build the ferryfs
// binary, mount a shared directory with `ferryfs mount` through /dev/fuse and
// drive the mount with ordinary system calls, checking the results both
// through the mount and on the host side of the shared directory.
//
// The tests need root and /dev/fuse and skip without them; set
// FERRYFS_REQUIRE_MOUNT_TESTS=1 (scripts/test-all.sh does) to turn those
// skips into failures, so CI cannot silently run none of them.
package tests
