package vhostuser

import "github.com/ferryfs/ferryfs/virtqueue"

// Device is the virtio device a Backend serves.
type Device interface {
	// Features returns the device-specific virtio feature bits; the
	// back-end adds the transport ones (VERSION_1, ring features).
	Features() uint64
	// Queues is the largest number of queues the device serves.
	Queues() int
	// Config returns the device's configuration space, or nil when the
	// device leaves it to the front-end.
	Config() []byte
	// Serve handles one descriptor chain taken from queue q and returns how
	// many bytes it wrote into the chain's writable buffers. It is called
	// from many goroutines at once.
	Serve(q int, c *virtqueue.Chain) uint32
	// Reset drops the device's state: the front-end reset the device.
	Reset()
}
