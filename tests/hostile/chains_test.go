package hostile

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	vf "github.com/ferryfs/ferryfs/tests/vhostfront"
)

// getattrReq is a well-formed GETATTR of the root: a malformed chain
// carries it, so that a chain the device failed to refuse would show up as
// a reply.
func (e *env) getattrReq() []byte {
	r := vf.NewFUSERequest(vf.OpGetattr, vf.RootID).Struct(&fuse.GetAttrIn{})
	r.Header.Unique = e.fs.NextUnique()
	return r.Encode()
}

// chainKit builds descriptor chains by hand on one queue.
type chainKit struct {
	t   *testing.T
	q   *vf.Queue
	mem *vf.Memory
}

func (k chainKit) put(b []byte) uint64 {
	addr, err := k.mem.Put(b)
	if err != nil {
		k.t.Fatal(err)
	}
	return addr
}

func (k chainKit) buf(n uint64) uint64 {
	addr, err := k.mem.Buffer(n)
	if err != nil {
		k.t.Fatal(err)
	}
	return addr
}

func (k chainKit) alloc(n int) []uint16 {
	ids, err := k.q.AllocDescs(n)
	if err != nil {
		k.t.Fatal(err)
	}
	return ids
}

// table writes descs as an indirect table and returns its address.
func (k chainKit) table(descs ...vf.Desc) uint64 {
	addr := k.buf(16 * uint64(len(descs)))
	k.q.WriteTable(addr, descs)
	return addr
}

// badChain is a malformed chain: build writes its descriptors and returns
// the head and the descriptors it took.
type badChain struct {
	name  string
	build func(k chainKit, req []byte) (head uint16, ids []uint16)
}

func badChains(mem *vf.Memory) []badChain {
	const (
		R = 0
		W = vf.DescWrite
		N = vf.DescNext
		I = vf.DescIndirect
	)
	rlen := func(req []byte) uint32 { return uint32(len(req)) }
	// single is a chain of one descriptor.
	single := func(d func(k chainKit, req []byte) vf.Desc) func(chainKit, []byte) (uint16, []uint16) {
		return func(k chainKit, req []byte) (uint16, []uint16) {
			ids := k.alloc(1)
			k.q.SetDesc(ids[0], d(k, req))
			return ids[0], ids
		}
	}
	// reqThen is the request followed by one more descriptor.
	reqThen := func(d func(k chainKit, req []byte) vf.Desc) func(chainKit, []byte) (uint16, []uint16) {
		return func(k chainKit, req []byte) (uint16, []uint16) {
			ids := k.alloc(2)
			k.q.SetDesc(ids[0], vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: R | N, Next: ids[1]})
			k.q.SetDesc(ids[1], d(k, req))
			return ids[0], ids
		}
	}
	// indirect is one ring descriptor referring to a table.
	indirect := func(d func(k chainKit, req []byte) vf.Desc) func(chainKit, []byte) (uint16, []uint16) {
		return single(d)
	}
	return []badChain{
		{"descriptor loop", func(k chainKit, req []byte) (uint16, []uint16) {
			ids := k.alloc(3)
			k.q.SetDesc(ids[0], vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: ids[1]})
			k.q.SetDesc(ids[1], vf.Desc{Addr: k.buf(8), Len: 8, Flags: N, Next: ids[2]})
			k.q.SetDesc(ids[2], vf.Desc{Addr: k.buf(8), Len: 8, Flags: N, Next: ids[0]})
			return ids[0], ids
		}},
		{"self loop", func(k chainKit, req []byte) (uint16, []uint16) {
			ids := k.alloc(1)
			k.q.SetDesc(ids[0], vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: ids[0]})
			return ids[0], ids
		}},
		{"next out of range", reqThen(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.buf(8), Len: 8, Flags: N, Next: queueSize}
		})},
		{"next 0xffff", reqThen(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.buf(8), Len: 8, Flags: N, Next: 0xffff}
		})},
		{"buffer below guest memory", single(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: 0x1000, Len: 64}
		})},
		{"buffer at the end of guest memory", single(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: mem.End(), Len: 64}
		})},
		{"buffer straddling the end of guest memory", reqThen(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: mem.End() - 8, Len: 4096, Flags: W}
		})},
		{"writable buffer far outside guest memory", reqThen(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: 0xdead_0000_0000, Len: 4096, Flags: W}
		})},
		{"address plus length wraps", single(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: ^uint64(0) - 15, Len: 64}
		})},
		{"writable address plus length wraps", reqThen(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: ^uint64(0) - 15, Len: 4096, Flags: W}
		})},
		{"huge writable length", reqThen(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.buf(4096), Len: 0xffffffff, Flags: W}
		})},
		{"huge readable length", single(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.put(req), Len: 0xffffffff}
		})},
		{"readable after writable", func(k chainKit, req []byte) (uint16, []uint16) {
			ids := k.alloc(3)
			k.q.SetDesc(ids[0], vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: ids[1]})
			k.q.SetDesc(ids[1], vf.Desc{Addr: k.buf(4096), Len: 4096, Flags: W | N, Next: ids[2]})
			k.q.SetDesc(ids[2], vf.Desc{Addr: k.put(req), Len: rlen(req)})
			return ids[0], ids
		}},
		{"indirect inside indirect", indirect(func(k chainKit, req []byte) vf.Desc {
			inner := k.table(vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: 1}, vf.Desc{Addr: k.buf(4096), Len: 4096, Flags: W})
			outer := k.table(vf.Desc{Addr: inner, Len: 32, Flags: I})
			return vf.Desc{Addr: outer, Len: 16, Flags: I}
		})},
		{"indirect descriptor inside an indirect table after a buffer", indirect(func(k chainKit, req []byte) vf.Desc {
			inner := k.table(vf.Desc{Addr: k.buf(4096), Len: 4096, Flags: W})
			outer := k.table(vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: 1}, vf.Desc{Addr: inner, Len: 16, Flags: I})
			return vf.Desc{Addr: outer, Len: 32, Flags: I}
		})},
		{"indirect table outside guest memory", indirect(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: mem.End() - 16, Len: 64, Flags: I}
		})},
		{"indirect table below guest memory", indirect(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: 0, Len: 32, Flags: I}
		})},
		{"indirect table address wraps", indirect(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: ^uint64(0) - 15, Len: 32, Flags: I}
		})},
		{"indirect table of odd length", indirect(func(k chainKit, req []byte) vf.Desc {
			t := k.table(vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: 1}, vf.Desc{Addr: k.buf(4096), Len: 4096, Flags: W})
			return vf.Desc{Addr: t, Len: 17, Flags: I}
		})},
		{"indirect table of 8 bytes", indirect(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.table(vf.Desc{Addr: k.put(req), Len: rlen(req)}), Len: 8, Flags: I}
		})},
		{"indirect table of zero length", indirect(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.table(vf.Desc{Addr: k.put(req), Len: rlen(req)}), Len: 0, Flags: I}
		})},
		{"indirect table of 32769 entries", indirect(func(k chainKit, req []byte) vf.Desc {
			descs := make([]vf.Desc, 32769)
			for i := range descs {
				descs[i] = vf.Desc{Addr: k.put(req[:0]), Len: 0, Flags: N, Next: uint16(i + 1)}
			}
			descs[0] = vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: 1}
			descs[len(descs)-1] = vf.Desc{Addr: k.buf(4096), Len: 4096, Flags: W}
			return vf.Desc{Addr: k.table(descs...), Len: 16 * 32769, Flags: I}
		})},
		{"indirect with NEXT", func(k chainKit, req []byte) (uint16, []uint16) {
			ids := k.alloc(2)
			t := k.table(vf.Desc{Addr: k.put(req), Len: rlen(req)})
			k.q.SetDesc(ids[0], vf.Desc{Addr: t, Len: 16, Flags: I | N, Next: ids[1]})
			k.q.SetDesc(ids[1], vf.Desc{Addr: k.buf(4096), Len: 4096, Flags: W})
			return ids[0], ids
		}},
		{"loop inside an indirect table", indirect(func(k chainKit, req []byte) vf.Desc {
			t := k.table(vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: 1}, vf.Desc{Addr: k.buf(8), Len: 8, Flags: N, Next: 0})
			return vf.Desc{Addr: t, Len: 32, Flags: I}
		})},
		{"next beyond an indirect table", indirect(func(k chainKit, req []byte) vf.Desc {
			// The entry after the table is a valid writable descriptor:
			// following it would read past the table.
			t := k.table(vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: 1}, vf.Desc{Addr: k.buf(4096), Len: 4096, Flags: W})
			return vf.Desc{Addr: t, Len: 16, Flags: I}
		})},
		{"zero-length chain", single(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.buf(16), Len: 0}
		})},
		{"zero-length readable and writable", reqThen(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.buf(16), Len: 0, Flags: W}
		})},
		{"writable buffer only", single(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.buf(4096), Len: 4096, Flags: W}
		})},
		{"no writable buffer for a request that needs a reply", single(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.put(req), Len: rlen(req)}
		})},
		{"writable buffer smaller than the reply header", reqThen(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.buf(8), Len: 8, Flags: W}
		})},
		{"request shorter than its header", single(func(k chainKit, req []byte) vf.Desc {
			return vf.Desc{Addr: k.put(req[:39]), Len: 39}
		})},
		{"chain longer than the queue size", func(k chainKit, req []byte) (uint16, []uint16) {
			// Every descriptor of the table, each pointing at the next
			// and the last back at the first: the walk must stop.
			ids := k.alloc(queueSize)
			for i, id := range ids {
				k.q.SetDesc(id, vf.Desc{Addr: k.put(req), Len: rlen(req), Flags: N, Next: ids[(i+1)%len(ids)]})
			}
			return ids[0], ids
		}},
	}
}

// TestMalformedChains sends every kind of malformed descriptor chain on
// the request queue and on the high-priority queue: each comes back used
// with 0 bytes written, and the next normal request on the same queue is
// served.
func TestMalformedChains(t *testing.T) {
	e := start(t, config{})
	for _, q := range []*vf.Queue{e.rq, e.hi} {
		k := chainKit{t: t, q: q, mem: e.f.Mem}
		for _, c := range badChains(e.f.Mem) {
			ok := t.Run(c.name+"/queue"+string(rune('0'+q.Index)), func(t *testing.T) {
				k.t = t
				req := e.getattrReq()
				head, ids := c.build(k, req)
				if err := q.Publish(head); err != nil {
					t.Fatal(err)
				}
				u, err := q.Wait()
				q.FreeDescs(ids)
				if err != nil {
					t.Fatalf("the malformed chain did not come back: %v", err)
				}
				if u.ID != uint32(head) || u.Len != 0 {
					t.Errorf("used entry {id %d, len %d}, want {id %d, len 0}", u.ID, u.Len, head)
				}
				e.alive()
				e.serves(q)
			})
			if !ok {
				t.FailNow()
			}
		}
	}
	e.waitLog(`refused a malformed descriptor chain`)
	e.finish()
}

// TestTooSmallReplyBuffer gives a LOOKUP a writable buffer with room for
// the reply header but not for fuse_entry_out: the request is answered
// with an error (EIO) rather than a truncated entry, and no lookup
// reference is taken.
func TestTooSmallReplyBuffer(t *testing.T) {
	e := start(t, config{})
	if err := os.WriteFile(filepath.Join(e.shared, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := e.fs.DoSize(vf.NewFUSERequest(vf.OpLookup, vf.RootID).Name("f"), vf.OutHeaderSize+4)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errno() != syscall.EIO {
		t.Errorf("LOOKUP into a 20-byte buffer: errno %v, want EIO", rep.Errno())
	}
	e.serves(e.rq)
	e.finish()
}

// TestLongIndirectChains sends well-formed requests in indirect tables
// longer than the queue (Linux's driver makes such chains): they are
// served, up to the largest table the spec allows (32768 entries).
func TestLongIndirectChains(t *testing.T) {
	e := start(t, config{})
	k := chainKit{t: t, q: e.rq, mem: e.f.Mem}
	for _, n := range []int{queueSize + 1, 32768} {
		req := e.getattrReq()
		descs := make([]vf.Desc, n)
		empty := k.buf(16)
		for i := range descs {
			descs[i] = vf.Desc{Addr: empty, Len: 0, Flags: vf.DescNext, Next: uint16(i + 1)}
		}
		// The request spread over the first entries, a byte each.
		for i := range req {
			descs[i] = vf.Desc{Addr: k.put(req[i : i+1]), Len: 1, Flags: vf.DescNext, Next: uint16(i + 1)}
		}
		reply := k.buf(4096)
		descs[n-1] = vf.Desc{Addr: reply, Len: 4096, Flags: vf.DescWrite}
		ids := k.alloc(1)
		e.rq.SetDesc(ids[0], vf.Desc{Addr: k.table(descs...), Len: uint32(16 * n), Flags: vf.DescIndirect})
		if err := e.rq.Publish(ids[0]); err != nil {
			t.Fatal(err)
		}
		u, err := e.rq.Wait()
		e.rq.FreeDescs(ids)
		if err != nil {
			t.Fatal(err)
		}
		if u.ID != uint32(ids[0]) {
			t.Fatalf("used id %d, want %d", u.ID, ids[0])
		}
		rep, err := vf.ParseReply(e.f.Mem.Bytes(reply, uint64(u.Len)))
		if err != nil {
			t.Fatalf("indirect chain of %d entries: %v", n, err)
		}
		if rep.Errno() != 0 {
			t.Errorf("indirect chain of %d entries: GETATTR errno %v", n, rep.Errno())
		}
		e.serves(e.rq)
	}
	e.finish()
}

// TestSplitRequests sends requests cut into one-byte descriptors, and
// replies into one-byte writable buffers: the request layer must put them
// together. A WRITE or READ spread over more buffers than the host's
// IOV_MAX (1024) is a valid request too.
func TestSplitRequests(t *testing.T) {
	e := start(t, config{})
	c := e.fuseOn(e.rq)
	c.Chain = vf.ChainOptions{Split: 1, Indirect: true}
	if err := os.WriteFile(filepath.Join(e.shared, "f"), []byte("contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	ent, err := c.Lookup(vf.RootID, "f")
	if err != nil {
		t.Fatalf("LOOKUP split byte by byte: %v", err)
	}
	if ent.Size != 8 {
		t.Fatalf("LOOKUP: size %d", ent.Size)
	}
	// Byte by byte in the ring itself (no indirect table).
	c.Chain = vf.ChainOptions{Split: 1}
	if _, err := c.GetAttr(vf.RootID); err != nil {
		t.Fatalf("GETATTR split byte by byte in the ring: %v", err)
	}

	cr, err := e.fs.Create(vf.RootID, "big", uint32(os.O_RDWR|os.O_CREATE), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("abcdefghijklmnop"), 256) // 4 KiB
	t.Run("WRITE over 4096+ descriptors", func(t *testing.T) {
		c.Chain = vf.ChainOptions{Split: 1, Indirect: true}
		n, err := c.Write(cr.NodeId, cr.Fh, 0, data)
		if err != nil || n != uint32(len(data)) {
			t.Errorf("WRITE of %d bytes split over %d descriptors = %d, %v; want %d, nil (pwritev with more than IOV_MAX iovecs?)",
				len(data), len(data)+80, n, err, len(data))
		}
	})
	if err := os.WriteFile(filepath.Join(e.shared, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("READ into 4096+ one-byte buffers", func(t *testing.T) {
		req := vf.NewFUSERequest(vf.OpRead, cr.NodeId).Struct(&fuse.ReadIn{Fh: cr.Fh, Size: uint32(len(data))})
		req.Header.Unique = c.NextUnique()
		writable := make([]int, vf.OutHeaderSize+len(data))
		for i := range writable {
			writable[i] = 1
		}
		sub, err := e.rq.Submit([][]byte{req.Encode()}, writable, vf.ChainOptions{Indirect: true})
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := e.rq.Complete(sub)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := vf.ParseReply(out)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Errno() != 0 || !bytes.Equal(rep.Payload, data) {
			t.Errorf("READ of %d bytes into one-byte buffers: errno %v, %d bytes (preadv with more than IOV_MAX iovecs?)",
				len(data), rep.Errno(), len(rep.Payload))
		}
	})
	e.serves(e.rq)
	e.finish()
}
