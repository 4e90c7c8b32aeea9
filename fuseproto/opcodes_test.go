package fuseproto

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// allOpcodes lists every opcode the request layer must answer for itself
// (serve, refuse or drop) rather than treat as unknown.
var allOpcodes = []opcode{
	opLookup, opForget, opGetattr, opSetattr, opReadlink, opSymlink, opMknod,
	opMkdir, opUnlink, opRmdir, opRename, opLink, opOpen, opRead, opWrite,
	opStatfs, opRelease, opFsync, opSetxattr, opGetxattr, opListxattr,
	opRemovexattr, opFlush, opInit, opOpendir, opReaddir, opReleasedir,
	opFsyncdir, opGetlk, opSetlk, opSetlkw, opAccess, opCreate, opInterrupt,
	opBmap, opDestroy, opIoctl, opPoll, opNotifyReply, opBatchForget,
	opFallocate, opReaddirplus, opRename2, opLseek, opCopyFileRange,
	opSetupMapping, opRemoveMapping, opSyncfs, opTmpfile, opStatx,
	opCopyFileRange64,
}

// decodedInto is, for every opcode whose handler decodes fixed arguments,
// the argument size of the go-fuse structure it decodes into.
var decodedInto = map[opcode]int{
	opInit:          argSize[fuse.InitIn](),
	opForget:        argSize[fuse.ForgetIn](),
	opBatchForget:   8,
	opGetattr:       argSize[fuse.GetAttrIn](),
	opSetattr:       argSize[fuse.SetAttrIn](),
	opMknod:         argSize[fuse.MknodIn](),
	opMkdir:         argSize[fuse.MkdirIn](),
	opRename:        argSize[fuse.RenameIn](),
	opRename2:       argSize[fuse.RenameIn](),
	opLink:          argSize[fuse.LinkIn](),
	opOpen:          argSize[fuse.OpenIn](),
	opCreate:        argSize[fuse.CreateIn](),
	opTmpfile:       argSize[fuse.CreateIn](),
	opRead:          argSize[fuse.ReadIn](),
	opWrite:         argSize[fuse.WriteIn](),
	opRelease:       argSize[fuse.ReleaseIn](),
	opFlush:         argSize[fuse.FlushIn](),
	opFsync:         argSize[fuse.FsyncIn](),
	opFallocate:     argSize[fuse.FallocateIn](),
	opLseek:         argSize[fuse.LseekIn](),
	opCopyFileRange: argSize[fuse.CopyFileRangeIn](),
	opOpendir:       argSize[fuse.OpenIn](),
	opReaddir:       argSize[fuse.ReadIn](),
	opReaddirplus:   argSize[fuse.ReadIn](),
	opReleasedir:    argSize[fuse.ReleaseIn](),
	opFsyncdir:      argSize[fuse.FsyncIn](),
	opAccess:        argSize[fuse.AccessIn](),
	opGetxattr:      argSize[fuse.GetXAttrIn](),
	opListxattr:     argSize[fuse.GetXAttrIn](),
	opSetxattr:      argSize[fuse.SetXAttrIn](),
	opInterrupt:     argSize[fuse.InterruptIn](),
	opSyncfs:        syncfsInSize, // never decoded, only checked
}

func TestOpTableComplete(t *testing.T) {
	known := make(map[opcode]bool)
	for _, op := range allOpcodes {
		known[op] = true
		if lookupOp(uint32(op)) == nil {
			t.Errorf("opcode %d has no table entry", op)
		}
	}
	names := make(map[string]opcode)
	for i := range opTable {
		op, info := opcode(i), &opTable[i]
		if info.handler == nil {
			if info.name != "" || info.argSize != 0 || info.names != [2]nameKind{} || info.outSize != 0 || info.noReply {
				t.Errorf("opcode %d: entry %q without handler", op, info.name)
			}
			if known[op] {
				t.Errorf("opcode %d: known but no handler", op)
			}
			continue
		}
		if !known[op] {
			t.Errorf("opcode %d (%s): handler for an opcode the test does not know", op, info.name)
		}
		if info.name == "" {
			t.Errorf("opcode %d: no name", op)
		}
		if prev, dup := names[info.name]; dup {
			t.Errorf("opcode %d: name %s already used by %d", op, info.name, prev)
		}
		names[info.name] = op
		if n := info.nameCount(); n > 0 && info.names[n-1] == nameNone {
			t.Errorf("%s: second name without a first", info.name)
		}
		for _, k := range info.names {
			if k > nameXattr {
				t.Errorf("%s: bad name kind %d", info.name, k)
			}
		}
		if info.noReply && info.outSize != 0 {
			t.Errorf("%s: no reply but a reply size", info.name)
		}
		if info.outSize < 0 || info.argSize < 0 {
			t.Errorf("%s: negative size", info.name)
		}
		for _, sess := range []*Session{nil, {Flags: fuse.CAP_SETXATTR_EXT}} {
			size := info.argSizeIn(sess)
			if size == 0 {
				continue
			}
			max, ok := decodedInto[op]
			if !ok {
				t.Errorf("%s: %d argument bytes but no decode target listed", info.name, size)
			} else if size > max {
				t.Errorf("%s: table says %d argument bytes, decode target holds %d", info.name, size, max)
			}
		}
	}
	if got := lookupOp(opcodeCount); got != nil {
		t.Errorf("lookupOp(opcodeCount) = %+v", got)
	}
	if got := lookupOp(4096); got != nil {
		t.Errorf("lookupOp(CUSE_INIT) = %+v", got)
	}
	if got := lookupOp(7); got != nil { // 7 has never been assigned
		t.Errorf("lookupOp(7) = %+v", got)
	}
}

// TestWireSizes pins the go-fuse structures to the sizes in the kernel's
// include/uapi/linux/fuse.h, since decoding copies bytes into them.
func TestWireSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  int
		want int
	}{
		{"fuse_in_header", inHeaderSize, 40},
		{"fuse_out_header", outHeaderSize, 16},
		{"fuse_init_in", initInMaxSize, 64},
		{"fuse_init_out", initOutSize, 64},
		{"fuse_forget_in", argSize[fuse.ForgetIn](), 8},
		{"fuse_getattr_in", argSize[fuse.GetAttrIn](), 16},
		{"fuse_setattr_in", argSize[fuse.SetAttrIn](), 88},
		{"fuse_mknod_in", argSize[fuse.MknodIn](), 16},
		{"fuse_mkdir_in", argSize[fuse.MkdirIn](), 8},
		{"fuse_rename2_in", argSize[fuse.RenameIn](), 16},
		{"fuse_link_in", argSize[fuse.LinkIn](), 8},
		{"fuse_open_in", argSize[fuse.OpenIn](), 8},
		{"fuse_create_in", argSize[fuse.CreateIn](), 16},
		{"fuse_read_in", argSize[fuse.ReadIn](), 40},
		{"fuse_write_in", argSize[fuse.WriteIn](), 40},
		{"fuse_release_in", argSize[fuse.ReleaseIn](), 24},
		{"fuse_flush_in", argSize[fuse.FlushIn](), 24},
		{"fuse_fsync_in", argSize[fuse.FsyncIn](), 16},
		{"fuse_fallocate_in", argSize[fuse.FallocateIn](), 32},
		{"fuse_lseek_in", argSize[fuse.LseekIn](), 24},
		{"fuse_copy_file_range_in", argSize[fuse.CopyFileRangeIn](), 56},
		{"fuse_access_in", argSize[fuse.AccessIn](), 8},
		{"fuse_getxattr_in", argSize[fuse.GetXAttrIn](), 8},
		{"fuse_setxattr_in", argSize[fuse.SetXAttrIn](), 16},
		{"fuse_interrupt_in", argSize[fuse.InterruptIn](), 8},
		{"fuse_entry_out", entryOutSize, 128},
		{"fuse_attr_out", attrOutSize, 104},
		{"fuse_open_out", openOutSize, 16},
		{"fuse_create_out", createOutSize, 144},
		{"fuse_write_out", writeOutSize, 8},
		{"fuse_statfs_out", statfsOutSize, 80},
		{"fuse_lseek_out", lseekOutSize, 8},
		{"fuse_getxattr_out", int(unsafe.Sizeof(fuse.GetXAttrOut{})), 8},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %d bytes, want %d", tc.name, tc.got, tc.want)
		}
	}
}

// TestInStructsStartWithHeader checks what decodeIn relies on: every
// structure it fills begins with fuse.InHeader.
func TestInStructsStartWithHeader(t *testing.T) {
	header := reflect.TypeFor[fuse.InHeader]()
	v := reflect.ValueOf(scratch{})
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !isInStruct(f.Type) {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Struct && ft != header {
			if ft.NumField() == 0 || ft.Field(0).Offset != 0 {
				t.Fatalf("%s: no first field", f.Name)
			}
			ft = ft.Field(0).Type
		}
		if ft != header {
			t.Errorf("%s (%s) does not start with fuse.InHeader", f.Name, f.Type)
		}
	}
}

func isInStruct(t reflect.Type) bool {
	n := t.Name()
	return len(n) > 2 && n[len(n)-2:] == "In"
}
