package fuseproto

import (
	"encoding/binary"
	"testing"
)

// On virtio-fs the high-priority queue carries FORGET, BATCH_FORGET and
// INTERRUPT in chains without any writable buffer: requests that take no
// reply must be served without one.
func TestNoReplyRequestsNeedNoOutBuffer(t *testing.T) {
	forget := make([]byte, 8)
	binary.NativeEndian.PutUint64(forget, 3)
	batch := make([]byte, 8+16)
	binary.NativeEndian.PutUint32(batch, 1)
	binary.NativeEndian.PutUint64(batch[8:], 5)
	binary.NativeEndian.PutUint64(batch[16:], 2)
	for _, c := range []struct {
		name string
		req  []byte
		want string
	}{
		{"FORGET", request(opForget, 7, forget), "Forget"},
		{"BATCH_FORGET", request(opBatchForget, 0, batch), "Forget"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, fs := newTestServer(t)
			if n := s.HandleRequest([][]byte{c.req}, nil); n != 0 {
				t.Fatalf("reply of %d bytes", n)
			}
			if len(fs.calls) != 1 || fs.calls[0].Op != c.want {
				t.Fatalf("calls %+v, want one %s", fs.calls, c.want)
			}
		})
	}
}
