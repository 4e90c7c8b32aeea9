//go:build !race

package vhostfront

// RaceEnabled is true when this package was built with -race; BuildDaemon
// then builds the daemon with -race too.
const RaceEnabled = false
