package guestmem

import (
	"errors"
	"runtime/debug"
	"testing"

	"golang.org/x/sys/unix"
)

func memfd(t *testing.T, size int64) int {
	t.Helper()
	fd, err := unix.MemfdCreate("guest", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestMapRefusesBadTables(t *testing.T) {
	cases := []struct {
		name  string
		specs func(t *testing.T) []RegionSpec
	}{
		{"zero size", func(t *testing.T) []RegionSpec {
			return []RegionSpec{{GuestAddr: 0, Size: 0, FD: memfd(t, 4096)}}
		}},
		{"wraps", func(t *testing.T) []RegionSpec {
			return []RegionSpec{{GuestAddr: ^uint64(0) - 10, Size: 4096, FD: memfd(t, 4096)}}
		}},
		{"overlap", func(t *testing.T) []RegionSpec {
			return []RegionSpec{{GuestAddr: 0, Size: 8192, FD: memfd(t, 8192)}, {GuestAddr: 4096, Size: 4096, FD: memfd(t, 4096)}}
		}},
		{"past the end of the file", func(t *testing.T) []RegionSpec {
			return []RegionSpec{{GuestAddr: 0, Size: 8192, FD: memfd(t, 4096)}}
		}},
		{"offset past the end of the file", func(t *testing.T) []RegionSpec {
			return []RegionSpec{{GuestAddr: 0, Size: 4096, MmapOffset: 4096, FD: memfd(t, 4096)}}
		}},
		{"bad fd", func(t *testing.T) []RegionSpec { return []RegionSpec{{GuestAddr: 0, Size: 4096, FD: 9999}} }},
		{"huge offset", func(t *testing.T) []RegionSpec {
			return []RegionSpec{{GuestAddr: 0, Size: 4096, MmapOffset: 1 << 50, FD: memfd(t, 4096)}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if m, err := Map(c.specs(t)); err == nil {
				m.Unmap()
				t.Fatal("accepted")
			}
		})
	}
}

func TestTranslate(t *testing.T) {
	// Two adjacent regions, the second mapped at an offset in its file.
	fd2 := memfd(t, 3*4096)
	keep, err := unix.Dup(fd2) // Map closes what it is given
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(keep)
	m, err := Map([]RegionSpec{
		{GuestAddr: 0x10000, Size: 4096, UserAddr: 0x7000_0000, FD: memfd(t, 4096)},
		{GuestAddr: 0x11000, Size: 8192, UserAddr: 0x9000_0000, MmapOffset: 4096, FD: fd2},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmap()
	b, err := m.Slice(0x10ff0, 16)
	if err != nil || len(b) != 16 || cap(b) != 16 {
		t.Fatalf("Slice at the end of a region: %d bytes (cap %d), %v", len(b), cap(b), err)
	}
	if _, err := m.Slice(0x10ff0, 17); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Slice across regions: %v", err)
	}
	if _, err := m.Slice(0xffff, 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Slice below memory: %v", err)
	}
	if _, err := m.Slice(0x13000, 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Slice above memory: %v", err)
	}
	parts, err := m.AppendSlices(nil, 0x10ff0, 32, 4)
	if err != nil || len(parts) != 2 || len(parts[0]) != 16 || len(parts[1]) != 16 {
		t.Fatalf("AppendSlices across adjacent regions: %d parts, %v", len(parts), err)
	}
	if _, err := m.AppendSlices(nil, 0x10ff0, 32, 1); err == nil {
		t.Fatal("AppendSlices beyond its limit of slices succeeded")
	}
	if _, err := m.AppendSlices(nil, ^uint64(0)-4, 16, 4); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("AppendSlices wrapping: %v", err)
	}
	// The offset is honoured: guest 0x11000 is byte 4096 of the file.
	parts[1][0] = 0xab
	var b1 [1]byte
	if _, err := unix.Pread(keep, b1[:], 4096); err != nil || b1[0] != 0xab {
		t.Fatalf("guest 0x11000 is not byte 4096 of its file: %#x, %v", b1[0], err)
	}
	if g, err := m.UserToGuest(0x9000_0010, 16); err != nil || g != 0x11010 {
		t.Fatalf("UserToGuest = %#x, %v", g, err)
	}
	if _, err := m.UserToGuest(0x9000_0000+8190, 16); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("UserToGuest past the region: %v", err)
	}
}

func TestWithWithout(t *testing.T) {
	m, err := Map([]RegionSpec{{GuestAddr: 0, Size: 4096, UserAddr: 0x1000_0000, FD: memfd(t, 4096)}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmap()
	if _, err := m.With(RegionSpec{GuestAddr: 2048, Size: 4096, FD: memfd(t, 4096)}); err == nil {
		t.Fatal("overlapping region added")
	}
	m2, err := m.With(RegionSpec{GuestAddr: 8192, Size: 4096, UserAddr: 0x2000_0000, FD: memfd(t, 4096)})
	if err != nil || m2.Regions() != 2 {
		t.Fatalf("With: %v", err)
	}
	if _, err := m2.Slice(8192, 4096); err != nil {
		t.Fatal(err)
	}
	m3, gone, err := m2.Without(RegionSpec{GuestAddr: 8192, Size: 4096, UserAddr: 0x2000_0000})
	if err != nil || m3.Regions() != 1 {
		t.Fatalf("Without: %v", err)
	}
	gone.Unmap()
	if _, err := m3.Slice(8192, 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatal("removed region still reachable")
	}
	if _, _, err := m3.Without(RegionSpec{GuestAddr: 8192, Size: 4096}); err == nil {
		t.Fatal("removed a region that is not there")
	}
}

func TestDirtyLogMark(t *testing.T) {
	fd := memfd(t, 16)
	dup, _ := unix.Dup(fd)
	l, err := MapDirtyLog(dup, 16, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unmap()
	view, err := unix.Mmap(fd, 0, 16, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(view)
	l.Mark(3*LogPageSize+10, LogPageSize) // pages 3 and 4
	l.Mark(9*LogPageSize, 1)              // page 9: byte 1, bit 1
	l.Mark(1<<40, 1)                      // far beyond the log: ignored
	l.Mark(0, 0)                          // nothing
	if view[0] != 0b0001_1000 || view[1] != 0b0000_0010 {
		t.Fatalf("log bytes %08b %08b", view[0], view[1])
	}
	if _, err := MapDirtyLog(memfd(t, 16), 0, 0); err == nil {
		t.Fatal("empty log accepted")
	}
}

func TestDirtyLogPastEndOfFile(t *testing.T) {
	for _, c := range []struct{ size, offset uint64 }{{8192, 0}, {4096, 1}, {1, 4096}} {
		if l, err := MapDirtyLog(memfd(t, 4096), c.size, c.offset); err == nil {
			l.Unmap()
			t.Errorf("a log of %#x bytes at offset %#x in a 4 KiB file was mapped", c.size, c.offset)
		}
	}
}

// TestFaultRecovered: a log whose file shrank after it was mapped faults
// when marked; with SetPanicOnFault the fault is a panic AsFault knows.
func TestFaultRecovered(t *testing.T) {
	fd := memfd(t, 4096)
	dup, _ := unix.Dup(fd)
	l, err := MapDirtyLog(dup, 4096, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unmap()
	if err := unix.Ftruncate(fd, 0); err != nil {
		t.Fatal(err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	err = func() (err error) {
		defer func() { err = AsFault(recover()) }()
		l.Mark(0, 1)
		return nil
	}()
	var fe *FaultError
	if !errors.As(err, &fe) || fe.Addr == 0 {
		t.Fatalf("marking a shrunk log: %v, want a FaultError", err)
	}
	if AsFault(nil) != nil || AsFault("x") != nil {
		t.Fatal("AsFault took a non-fault for a fault")
	}
}
