package vhostuser

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTruncatedHeaderClosesFDs: descriptors that arrive with the rest of a
// message header the front-end then cuts short are closed, not leaked.
func TestTruncatedHeaderClosesFDs(t *testing.T) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	c, err := newConn(sp[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])

	hdr := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(hdr, uint32(SetVringCall))
	binary.LittleEndian.PutUint32(hdr[4:], flagVersion)
	binary.LittleEndian.PutUint32(hdr[8:], 8)
	if _, err := unix.Write(sp[0], hdr[:4]); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.read()
		done <- err
	}()
	// Let the first recvmsg take the first 4 bytes alone: the descriptor
	// then comes with the second part of the header.
	time.Sleep(50 * time.Millisecond)
	if err := unix.Sendmsg(sp[0], hdr[4:8], unix.UnixRights(p[1]), nil, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[1])
	unix.Shutdown(sp[0], unix.SHUT_WR)
	if err := <-done; err == nil {
		t.Fatal("a truncated header was read as a message")
	}
	// Every copy of the pipe's write end is closed: the read end sees EOF.
	var b [1]byte
	if n, err := unix.Read(p[0], b[:]); n != 0 || err != nil {
		t.Fatalf("pipe read: %d, %v; the descriptor sent with the truncated header was leaked", n, err)
	}
}
