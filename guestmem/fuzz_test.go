package guestmem

import (
	"encoding/binary"
	"errors"
	"runtime/debug"
	"testing"

	"golang.org/x/sys/unix"
)

// touch reads and writes back the first and last byte of b, turning a fault
// into a test failure (the process would die of it otherwise).
func touch(t *testing.T, what string, b []byte) {
	t.Helper()
	if len(b) == 0 {
		return
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				if err = AsFault(r); err == nil {
					panic(r)
				}
			}
		}()
		b[0] ^= 0
		b[len(b)-1] |= 0
		return nil
	}()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

const fuzzFileMax = 1 << 20 // the largest memfd the fuzzers create

// FuzzMemoryTable maps a memory table of up to four regions against real
// memfds and translates addresses through it. The region fields are the
// fuzzer's, unchecked; only the files' sizes are bounded. Whatever Map
// accepts must be safe to touch wherever a translation leads, and a
// translation must lead to the right byte of the right file.
func FuzzMemoryTable(f *testing.F) {
	le := binary.LittleEndian
	region := func(b []byte, guest, size, user, offset uint64, file uint32) []byte {
		for _, v := range []uint64{guest, size, user, offset} {
			b = le.AppendUint64(b, v)
		}
		return le.AppendUint32(b, file)
	}
	query := func(b []byte, addr, n uint64) []byte { return le.AppendUint64(le.AppendUint64(b, addr), n) }
	f.Add(region(nil, 0x100000, 0x10000, 0x7f0000000000, 0, 0x10000), query(query(nil, 0x100ff0, 16), 0x7f0000000010, 8))
	f.Add(region(region(nil, 0x10000, 4096, 0x70000000, 0, 4096), 0x11000, 8192, 0x90000000, 4096, 3*4096), query(query(nil, 0x10ff0, 32), 0x90001ff0, 16))
	f.Add(region(nil, 0, 8192, 0, 0, 4096), query(nil, 4096, 1))                     // past the end of the file
	f.Add(region(nil, ^uint64(0)-4095, 4096, 0, 0, 4096), query(nil, ^uint64(0), 1)) // wraps
	f.Add(region(region(nil, 0, 8192, 0, 0, 8192), 4096, 4096, 1<<20, 0, 4096), query(nil, 4096, 1))
	f.Add(region(nil, 0x1000, 4096, 0x1000, 1, 4097), query(nil, 0x1fff, 1))
	f.Fuzz(func(t *testing.T, specs, queries []byte) {
		var rs []RegionSpec
		var files []int
		for len(specs) >= 36 && len(rs) < 4 {
			s := RegionSpec{GuestAddr: le.Uint64(specs), Size: le.Uint64(specs[8:]), UserAddr: le.Uint64(specs[16:]), MmapOffset: le.Uint64(specs[24:])}
			fileSize := int64(le.Uint32(specs[32:]) % (fuzzFileMax + 1))
			specs = specs[36:]
			fd, err := unix.MemfdCreate("fuzz-guest", unix.MFD_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := unix.Ftruncate(fd, fileSize); err != nil {
				t.Fatal(err)
			}
			files = append(files, fd)
			if s.FD, err = unix.Dup(fd); err != nil {
				t.Fatal(err)
			}
			rs = append(rs, s)
		}
		if len(rs) == 0 {
			return
		}
		m, err := Map(rs)
		if err != nil {
			return
		}
		defer m.Unmap()
		// fileOf finds the file and the offset in it of guest address a.
		fileOf := func(a uint64) (int, int64, bool) {
			for i, s := range rs {
				if a >= s.GuestAddr && a-s.GuestAddr < s.Size {
					return files[i], int64(s.MmapOffset + a - s.GuestAddr), true
				}
			}
			return 0, 0, false
		}
		for ; len(queries) >= 16; queries = queries[16:] {
			addr, n := le.Uint64(queries), le.Uint64(queries[8:])%(2*fuzzFileMax)
			if b, err := m.Slice(addr, n); err == nil {
				if uint64(len(b)) != n {
					t.Fatalf("Slice(%#x, %d) gave %d bytes", addr, n, len(b))
				}
				touch(t, "Slice", b)
				if n > 0 {
					fd, off, ok := fileOf(addr)
					if !ok {
						t.Fatalf("Slice(%#x, %d) translated an address outside every region", addr, n)
					}
					b[0] = 0xa5
					var got [1]byte
					if _, err := unix.Pread(fd, got[:], off); err != nil || got[0] != 0xa5 {
						t.Fatalf("guest %#x is not byte %d of its file: %#x, %v", addr, off, got[0], err)
					}
					b[0] = 0
				}
			} else if !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("Slice: %v", err)
			}
			parts, err := m.AppendSlices(nil, addr, n, 4)
			if err == nil {
				total := uint64(0)
				for _, p := range parts {
					touch(t, "AppendSlices", p)
					total += uint64(len(p))
				}
				if total != n {
					t.Fatalf("AppendSlices(%#x, %d) gave %d bytes", addr, n, total)
				}
			}
			if g, err := m.UserToGuest(addr, n); err == nil {
				if b, err := m.Slice(g, n); err != nil {
					t.Fatalf("UserToGuest(%#x, %d) = %#x, which Slice refuses: %v", addr, n, g, err)
				} else {
					touch(t, "UserToGuest", b)
				}
			}
		}
	})
}

// FuzzDirtyLogMark maps a dirty log of the fuzzer's size and offset over a
// memfd of the fuzzer's (bounded) size and marks the fuzzer's ranges: a
// log that maps must take every mark without a fault, and set exactly the
// bits of the marked pages that lie inside it.
func FuzzDirtyLogMark(f *testing.F) {
	le := binary.LittleEndian
	mark := func(b []byte, addr, n uint64) []byte { return le.AppendUint64(le.AppendUint64(b, addr), n) }
	f.Add(uint64(16), uint64(0), uint32(16), mark(mark(nil, 3*LogPageSize+10, LogPageSize), 1<<40, 1))
	f.Add(uint64(4096), uint64(4096), uint32(8192), mark(nil, 0, 1<<30))
	f.Add(uint64(1<<20), uint64(0), uint32(4096), mark(nil, 1<<34, 1)) // larger than its file
	f.Add(uint64(5), uint64(3), uint32(8), mark(nil, ^uint64(0)-10, 100))
	f.Fuzz(func(t *testing.T, size, offset uint64, fileSize uint32, marks []byte) {
		fd, err := unix.MemfdCreate("fuzz-log", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		fsize := int64(fileSize % (fuzzFileMax + 1))
		if err := unix.Ftruncate(fd, fsize); err != nil {
			t.Fatal(err)
		}
		dup, err := unix.Dup(fd)
		if err != nil {
			t.Fatal(err)
		}
		l, err := MapDirtyLog(dup, size, offset)
		if err != nil {
			return
		}
		defer l.Unmap()
		want := make([]byte, size)
		for ; len(marks) >= 16; marks = marks[16:] {
			addr, n := le.Uint64(marks), le.Uint64(marks[8:])
			func() {
				defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
				defer func() {
					if r := recover(); r != nil {
						if err := AsFault(r); err != nil {
							t.Fatalf("Mark(%#x, %d) on a log of %d bytes at %d in a file of %d: %v", addr, n, size, offset, fsize, err)
						}
						panic(r)
					}
				}()
				l.Mark(addr, n)
			}()
			// The model: Mark's pages, the ones inside the log. A range
			// that wraps around is no guest range: nothing is marked.
			last := addr + n - 1
			if n == 0 || last < addr {
				continue
			}
			for p := addr / LogPageSize; p <= last/LogPageSize && p/8 < size; p++ {
				want[p/8] |= 1 << (p % 8)
			}
		}
		got := make([]byte, size)
		if _, err := unix.Pread(fd, got, int64(offset)); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("log byte %d is %08b, want %08b", i, got[i], want[i])
			}
		}
	})
}
