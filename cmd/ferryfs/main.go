// Command ferryfs is a virtio-fs back-end daemon. "ferryfs mount" serves a
// shared directory on a local FUSE mount instead of to a guest.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// cpuProfileEnv names a file to write a CPU profile of the whole run to,
// for measuring the daemon under a real guest (go tool pprof FILE).
const cpuProfileEnv = "FERRYFS_CPUPROFILE"

func main() {
	if path := os.Getenv(cpuProfileEnv); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ferryfs: %s: %v\n", cpuProfileEnv, err)
			os.Exit(1)
		}
		defer stop()
	}
	if err := newRootCmd().Execute(); err != nil {
		if err != errStateProblems { // already reported on standard output
			fmt.Fprintf(os.Stderr, "ferryfs: %v\n", err)
		}
		os.Exit(1) // the profile of a failed start is of no interest
	}
}

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
