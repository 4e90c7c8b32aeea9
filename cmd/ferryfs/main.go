// Command ferryfs is a virtio-fs back-end daemon. "ferryfs mount" serves a
// shared directory on a local FUSE mount instead of to a guest.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "ferryfs: %v\n", err)
		os.Exit(1)
	}
}
