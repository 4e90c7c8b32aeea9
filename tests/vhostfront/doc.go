// Package vhostfront is a minimal vhost-user front-end for tests: it plays
// the part QEMU plays for a virtio-fs back-end such as ferryfs, and the part
// the guest's virtio driver plays on the rings.
//
// It is written for tests and is deliberately permissive: every layer can be
// driven "by hand" so that tests can send what no correct front-end would.
//
//   - Conn speaks the vhost-user wire protocol on a unix socket: messages
//     with file descriptors (SCM_RIGHTS), replies, REPLY_ACK, and raw bytes.
//   - Memory is the guest memory: a memfd the front-end maps too and sends
//     with SET_MEM_TABLE, with simple allocators for rings and buffers.
//   - Frontend negotiates features as QEMU does (GET_FEATURES,
//     GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_OWNER, SET_FEATURES),
//     sends the memory table and starts queues.
//   - Queue is the driver side of one split virtqueue: descriptor chains
//     (direct or indirect), the available ring, kicks, the call eventfd and
//     the used ring. Raw accessors let a test write any descriptor or index.
//   - Request, Reply and FUSE encode FUSE requests from go-fuse's wire
//     structures (little-endian) and decode the replies.
//   - Daemon builds and runs the ferryfs binary and inspects its exit and
//     its log.
//
// A typical test:
//
//	d, _ := vhostfront.StartDaemon(vhostfront.DaemonOptions{Binary: bin, SocketPath: sock, SharedDir: dir})
//	conn, _ := d.Dial(10 * time.Second)
//	f, _ := vhostfront.NewFrontend(conn, vhostfront.Options{})
//	_ = f.Setup()                     // negotiate + SET_MEM_TABLE
//	q, _ := f.StartQueue(1, 256)      // the first request queue
//	fs := vhostfront.NewFUSE(q)
//	_, _ = fs.Init()
//	e, _ := fs.Lookup(vhostfront.RootID, "file")
//	_ = f.Close()
//	code, _ := d.Wait(10 * time.Second)
//
// Nothing here is safe for concurrent use unless its documentation says so.
package vhostfront
