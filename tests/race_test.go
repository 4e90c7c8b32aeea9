//go:build race

package tests

// The test binary was built with -race, so the daemon under test is too:
// a data race in the daemon then shows up as a "DATA RACE" report on its
// stderr and a non-zero exit status, which the mount helper turns into a
// test failure.
func init() { raceEnabled = true }
