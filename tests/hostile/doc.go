// Package hostile holds the hostile-input tests of ferryfs's vhost-user
// back-end: malformed descriptor chains, broken rings, malformed FUSE
// requests and vhost-user protocol violations, sent to the real daemon by
// the test front-end of package vhostfront, and a fuzz target for the
// message loop. Every test checks that the daemon survives (no panic, no
// crash) and keeps serving, or closes the connection cleanly.
package hostile
