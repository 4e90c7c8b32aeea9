package vhostuser_test

import (
	"bufio"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/tests/vhostfront"
	"github.com/ferryfs/ferryfs/vhostuser"
)

// countMappings counts this process's mappings of files named name.
func countMappings(t *testing.T, name string) int {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), name) {
			n++
		}
	}
	return n
}

// TestRepeatedLogBase: every SET_LOG_BASE replaces the dirty log; the logs
// it replaced are unmapped then, not kept until the connection ends (a
// front-end repeating it would otherwise map without bound). The running
// queue logs into the new log and keeps serving.
func TestRepeatedLogBase(t *testing.T) {
	const name = "vhostuser-test-log"
	f, q, _ := startInProcess(t, echoDevice{}, vhostuser.Options{}, vhostfront.Options{
		Features: vhostfront.FeatureVersion1 | vhostfront.FeatureEventIdx | vhostfront.FeatureProtocolFeatures | vhostfront.FeatureLogAll,
		Protocol: vhostfront.ProtocolReplyAck | vhostfront.ProtocolMQ | vhostfront.ProtocolLogShmfd,
	})
	a := q.Addr()
	a.Flags, a.LogGuestA = 1, q.UsedAddr
	if err := f.Set(vhostfront.SetVringAddr, a.Encode(), nil); err != nil {
		t.Fatal(err)
	}
	size := (f.Mem.End()/4096/8 + 4095) &^ 4095
	var last []byte
	for i := range 50 {
		fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			t.Fatal(err)
		}
		if i == 49 {
			if last, err = unix.Mmap(fd, 0, int(size), unix.PROT_READ, unix.MAP_SHARED); err != nil {
				t.Fatal(err)
			}
			defer unix.Munmap(last)
		}
		payload := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, size), 0)
		_, err = f.Conn.Call(vhostfront.SetLogBase, payload, []int{fd})
		unix.Close(fd)
		if err != nil {
			t.Fatalf("SET_LOG_BASE %d: %v", i, err)
		}
	}
	// Ours, and the back-end's of the current log.
	if n := countMappings(t, name); n > 2 {
		t.Errorf("%d mappings of dirty logs after 50 SET_LOG_BASE, want the current one only", n-1)
	}
	sub, err := q.Submit([][]byte{make([]byte, 16)}, []int{16}, vhostfront.ChainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.Complete(sub); err != nil {
		t.Fatalf("after the logs were replaced: %v", err)
	}
	page := q.UsedAddr / 4096
	if last[page/8]&(1<<(page%8)) == 0 {
		t.Error("the used ring's page is not marked in the current log")
	}
}
