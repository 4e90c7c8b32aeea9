package fuseproto

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// fuzzSeeds are well-formed requests of every kind, for the fuzzer to start
// from.
func fuzzSeeds() [][]byte {
	data := bytes.Repeat([]byte{'d'}, 300)
	batch := binary.NativeEndian.AppendUint32(nil, 2)
	batch = append(batch, make([]byte, 4+2*forgetOneSize)...)
	seeds := [][]byte{
		initRequest(7, 41, kernelFlags),
		request(opLookup, 1, cstr("foo")),
		request(opForget, 5, argBytes(&fuse.ForgetIn{Nlookup: 1})),
		request(opBatchForget, 0, batch),
		request(opGetattr, 1, argBytes(&fuse.GetAttrIn{})),
		request(opSetattr, 1, argBytes(&fuse.SetAttrIn{})),
		request(opReadlink, 4),
		request(opSymlink, 1, cstr("ln"), cstr("a/b")),
		request(opMknod, 1, argBytes(&fuse.MknodIn{}), cstr("n")),
		request(opMkdir, 1, argBytes(&fuse.MkdirIn{}), cstr("d")),
		request(opUnlink, 1, cstr("f")),
		request(opRmdir, 1, cstr("d")),
		request(opRename, 1, make([]byte, 8), cstr("a"), cstr("b")),
		request(opRename2, 1, argBytes(&fuse.RenameIn{}), cstr("a"), cstr("b")),
		request(opLink, 1, argBytes(&fuse.LinkIn{Oldnodeid: 2}), cstr("l")),
		request(opOpen, 2, argBytes(&fuse.OpenIn{})),
		request(opCreate, 1, argBytes(&fuse.CreateIn{}), cstr("c")),
		request(opTmpfile, 1, argBytes(&fuse.CreateIn{}), cstr("/")),
		request(opRead, 2, argBytes(&fuse.ReadIn{Size: 4096})),
		request(opWrite, 2, argBytes(&fuse.WriteIn{Size: uint32(len(data))}), data),
		request(opStatfs, 1),
		request(opRelease, 2, argBytes(&fuse.ReleaseIn{})),
		request(opFlush, 2, argBytes(&fuse.FlushIn{})),
		request(opFsync, 2, argBytes(&fuse.FsyncIn{})),
		request(opOpendir, 1, argBytes(&fuse.OpenIn{})),
		request(opReaddir, 1, argBytes(&fuse.ReadIn{Size: 4096})),
		request(opReaddirplus, 1, argBytes(&fuse.ReadIn{Size: 4096})),
		request(opReleasedir, 1, argBytes(&fuse.ReleaseIn{})),
		request(opFsyncdir, 1, argBytes(&fuse.FsyncIn{})),
		request(opAccess, 1, argBytes(&fuse.AccessIn{})),
		request(opGetxattr, 1, argBytes(&fuse.GetXAttrIn{Size: 64}), cstr("user.x")),
		request(opGetxattr, 1, argBytes(&fuse.GetXAttrIn{}), cstr("user.x")),
		request(opSetxattr, 1, argBytes(&fuse.SetXAttrIn{Size: 3})[:8], cstr("user.x"), []byte("abc")),
		request(opListxattr, 1, argBytes(&fuse.GetXAttrIn{Size: 64})),
		request(opRemovexattr, 1, cstr("user.x")),
		request(opFallocate, 2, argBytes(&fuse.FallocateIn{})),
		request(opLseek, 2, argBytes(&fuse.LseekIn{})),
		request(opCopyFileRange, 2, argBytes(&fuse.CopyFileRangeIn{Len: 10})),
		request(opSyncfs, 1, make([]byte, 8)),
		request(opInterrupt, 0, make([]byte, 8)),
		request(opIoctl, 2, make([]byte, 32)),
		request(opGetlk, 2, make([]byte, 48)),
		request(opDestroy, 0),
	}
	// One with extensions.
	ext := request(opMkdir, 1, argBytes(&fuse.MkdirIn{}), cstr("x"), make([]byte, 16))
	binary.NativeEndian.PutUint16(ext[36:], 2)
	return append(seeds, ext)
}

// FuzzHandleRequest feeds arbitrary bytes, cut into two input buffers at a
// fuzzed point (and with the length field optionally made to match), to a
// server with an initialized session, with out buffers of fuzzed size cut at
// a fuzzed point. It checks that serving neither panics nor produces a reply
// the kernel would reject.
func FuzzHandleRequest(f *testing.F) {
	for i, seed := range fuzzSeeds() {
		f.Add(seed, uint16(i*7), uint16(4096+outHeaderSize), uint8(i), false, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, cut, outSize uint16, outCut uint8, setxattrExt, fixLength bool) {
		if fixLength && len(data) >= 4 {
			// Most mutations change the size; keeping the length
			// field honest lets them reach the decoders.
			binary.NativeEndian.PutUint32(data, uint32(len(data)))
		}
		fs := &fakeFS{
			quiet:      true,
			fileData:   bytes.Repeat([]byte{'f'}, 10000),
			linkTarget: "target",
			xattr:      []byte("user.a\x00"),
			dirNames:   []string{"a", "bb", strings.Repeat("c", NameMax)},
		}
		s := NewServer(fs, ServerOptions{Logger: quietLogger()})
		sess := testSession()
		if setxattrExt {
			sess.Flags |= fuse.CAP_SETXATTR_EXT
		}
		s.SetSession(sess)

		k := int(cut) % (len(data) + 1)
		in := [][]byte{data[:k], data[k:]}
		outBuf := make([]byte, outSize)
		j := int(outCut) % (len(outBuf) + 1)
		out := [][]byte{outBuf[:j], outBuf[j:]}

		n := s.HandleRequest(in, out)
		if n == 0 {
			return
		}
		if n < outHeaderSize || n > len(outBuf) {
			t.Fatalf("reply of %d bytes in %d", n, len(outBuf))
		}
		if len(data) < inHeaderSize {
			t.Fatalf("reply to a %d-byte request", len(data))
		}
		var hdr fuse.OutHeader
		copy(asBytes(&hdr), outBuf)
		var req fuse.InHeader
		copy(asBytes(&req), data)
		switch {
		case int(hdr.Length) != n:
			t.Fatalf("header length %d, returned %d", hdr.Length, n)
		case hdr.Unique != req.Unique:
			t.Fatalf("unique %d, request's %d", hdr.Unique, req.Unique)
		case hdr.Status > 0 || hdr.Status <= -512:
			t.Fatalf("status %d", hdr.Status)
		case hdr.Status != 0 && n != outHeaderSize:
			t.Fatalf("error reply with %d payload bytes", n-outHeaderSize)
		}
		if op := lookupOp(req.Opcode); op != nil && op.noReply {
			t.Fatalf("reply to %s", op.name)
		}
	})
}
