package fuseproto

import (
	"bytes"
	"encoding/binary"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func TestDirWriterAlignment(t *testing.T) {
	for nameLen := 1; nameLen <= 40; nameLen++ {
		var w DirWriter
		w.reset(bytes.Repeat([]byte{0xaa}, 4096)) // dirty, like a reused buffer
		name := string(bytes.Repeat([]byte{'n'}, nameLen))
		if !w.Add(name, 5, syscall.S_IFDIR|0o755, 77) {
			t.Fatalf("name of %d bytes does not fit in 4096", nameLen)
		}
		if w.Len()%8 != 0 || w.Len() != direntSize(nameLen) || w.Len() < direntHeaderSize+nameLen {
			t.Fatalf("name of %d bytes: entry of %d bytes", nameLen, w.Len())
		}
		b := w.buf[:w.Len()]
		ne := binary.NativeEndian
		if ne.Uint64(b) != 5 || ne.Uint64(b[8:]) != 77 || ne.Uint32(b[16:]) != uint32(nameLen) || ne.Uint32(b[20:]) != syscall.DT_DIR {
			t.Errorf("header % x", b[:direntHeaderSize])
		}
		if string(b[direntHeaderSize:direntHeaderSize+nameLen]) != name {
			t.Errorf("name %q", b[direntHeaderSize:direntHeaderSize+nameLen])
		}
		for _, p := range b[direntHeaderSize+nameLen:] {
			if p != 0 {
				t.Fatalf("name of %d bytes: padding % x", nameLen, b[direntHeaderSize+nameLen:])
			}
		}
		if w.buf[w.Len()] != 0xaa {
			t.Errorf("wrote past the entry")
		}
	}
}

func TestDirWriterTypes(t *testing.T) {
	for mode, want := range map[uint32]uint32{
		syscall.S_IFREG | 0o644: syscall.DT_REG, syscall.S_IFDIR: syscall.DT_DIR, syscall.S_IFLNK: syscall.DT_LNK,
		syscall.S_IFIFO: syscall.DT_FIFO, syscall.S_IFSOCK: syscall.DT_SOCK, syscall.S_IFCHR: syscall.DT_CHR,
		syscall.S_IFBLK: syscall.DT_BLK, 0o644: syscall.DT_UNKNOWN,
	} {
		var w DirWriter
		w.reset(make([]byte, 64))
		w.Add("x", 1, mode, 1)
		if got := binary.NativeEndian.Uint32(w.buf[20:]); got != want {
			t.Errorf("mode %o: type %d, want %d", mode, got, want)
		}
	}
}

func TestDirWriterFull(t *testing.T) {
	var w DirWriter
	w.reset(make([]byte, 64))
	if !w.Add("a", 1, syscall.S_IFREG, 1) || !w.Add("b", 2, syscall.S_IFREG, 2) {
		t.Fatal("two 32-byte entries do not fit in 64 bytes")
	}
	if w.Add("c", 3, syscall.S_IFREG, 3) {
		t.Error("entry accepted in a full buffer")
	}
	if w.Len() != 64 {
		t.Errorf("Len %d after refusal", w.Len())
	}
	w.reset(make([]byte, 63))
	w.Add("a", 1, syscall.S_IFREG, 1)
	if w.Add("b", 2, syscall.S_IFREG, 2) || w.Len() != 32 {
		t.Errorf("entry accepted into 31 bytes; Len %d", w.Len())
	}
	var empty DirWriter
	if empty.Add("a", 1, 0, 1) || empty.FitsPlus(1) || empty.FitsPlus(-1) || empty.Len() != 0 {
		t.Error("zero DirWriter accepted an entry")
	}
}

func TestDirWriterPlus(t *testing.T) {
	entry := fuse.EntryOut{NodeId: 9, Generation: 2, EntryValid: 1}
	entry.Ino = 90
	entry.Mode = syscall.S_IFLNK | 0o777
	for size := 0; size <= 3*(entryOutSize+40); size++ {
		var w DirWriter
		w.reset(make([]byte, size))
		for i := 0; ; i++ {
			name := string(bytes.Repeat([]byte{'p'}, 1+i*5))
			fits := w.FitsPlus(len(name))
			before := w.Len()
			added := w.AddPlus(name, &entry, uint64(i+1))
			if fits != added {
				t.Fatalf("buffer %d, entry %d: FitsPlus %v but AddPlus %v", size, i, fits, added)
			}
			if !added {
				if w.Len() != before {
					t.Fatalf("refused AddPlus wrote %d bytes", w.Len()-before)
				}
				break
			}
			b := w.buf[before:w.Len()]
			if len(b) != direntPlusSize(len(name)) || len(b)%8 != 0 {
				t.Fatalf("direntplus of %d bytes for a %d-byte name", len(b), len(name))
			}
			var got fuse.EntryOut
			copy(asBytes(&got), b)
			if got != entry {
				t.Errorf("entry %+v", got)
			}
			d := b[entryOutSize:]
			if binary.NativeEndian.Uint64(d) != 90 || binary.NativeEndian.Uint32(d[20:]) != syscall.DT_LNK {
				t.Errorf("dirent % x", d[:direntHeaderSize])
			}
		}
	}
}

func TestDirWriterFitsPlusHugeName(t *testing.T) {
	var w DirWriter
	w.reset(make([]byte, 4096))
	const maxInt = int(^uint(0) >> 1)
	for _, n := range []int{-1, 4096, maxInt, maxInt - 7} {
		if w.FitsPlus(n) {
			t.Errorf("FitsPlus(%d) in 4096 bytes", n)
		}
	}
}
