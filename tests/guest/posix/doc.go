// Package posix runs go-fuse's POSIX conformance suite (posixtest.All)
// inside ferryfs's test guests, against a virtio-fs mount.
//
// Its test is built only with the ferryfs_guest build tag, by tests/vm:
//
//	CGO_ENABLED=0 go test -c -tags ferryfs_guest -o posix.test ./tests/guest/posix
//
// and runs in the guest as
//
//	/posix.test -test.v -mnt /mnt/posix
//
// The tag keeps it out of a plain `go test ./...` on the host, where it
// would have no mount to test and could only report a test that ran
// nothing; there the package shows as "[no test files]". The host-side
// counterpart that runs the same suite on a local FUSE mount is in tests/.
package posix
