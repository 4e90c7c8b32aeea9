// Package virtiofs is the virtio-fs device: it serves the FUSE requests that
// arrive in virtqueue descriptor chains with a fuseproto.Server, and
// describes the device (its tag, its queues) to the vhost-user back-end.
//
// Queue 0 is the high-priority queue (FORGET, INTERRUPT); the others are
// request queues. Both kinds go through the same request layer.
package virtiofs

import (
	"encoding/binary"
	"fmt"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/vhostuser"
	"github.com/ferryfs/ferryfs/virtqueue"
)

// TagMax is the longest tag virtio-fs carries (the config space's tag
// field).
const TagMax = 36

// MaxRequestQueues is how many request queues we serve besides the
// high-priority one.
const MaxRequestQueues = 16

// Device is a virtio-fs device serving one FUSE server.
type Device struct {
	srv    *fuseproto.Server
	config []byte
}

var _ vhostuser.Device = (*Device)(nil)

// New returns a device for srv. With a tag, the device answers the
// front-end's configuration reads with it (virtiofsd's --tag); without
// one, the front-end supplies the tag itself (QEMU's tag= property).
func New(srv *fuseproto.Server, tag string) (*Device, error) {
	d := &Device{srv: srv}
	if tag != "" {
		if len(tag) > TagMax {
			return nil, fmt.Errorf("tag %q is longer than %d bytes", tag, TagMax)
		}
		// struct virtio_fs_config: u8 tag[36]; le32 num_request_queues;
		// le32 notify_buf_size.
		d.config = make([]byte, TagMax+8)
		copy(d.config, tag)
		binary.LittleEndian.PutUint32(d.config[TagMax:], MaxRequestQueues)
	}
	return d, nil
}

// Features returns the virtio-fs feature bits: none (notifications, bit
// 0, are not offered).
func (d *Device) Features() uint64 { return 0 }

// Queues is the high-priority queue plus the request queues.
func (d *Device) Queues() int { return 1 + MaxRequestQueues }

// Config returns the configuration space, nil without a tag.
func (d *Device) Config() []byte { return d.config }

// Serve handles one FUSE request.
func (d *Device) Serve(q int, c *virtqueue.Chain) uint32 {
	return uint32(d.srv.HandleRequest(c.Readable, c.Writable))
}

// Reset ends the FUSE session: the device was reset without the guest
// saying so (a reboot).
func (d *Device) Reset() { d.srv.Reset() }
