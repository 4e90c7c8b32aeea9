package fuseproto

import (
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// opcode is a FUSE request opcode (fuse_in_header.opcode). go-fuse keeps its
// own constants private, so the values from include/uapi/linux/fuse.h are
// repeated here.
type opcode uint32

const (
	opLookup          opcode = 1
	opForget          opcode = 2
	opGetattr         opcode = 3
	opSetattr         opcode = 4
	opReadlink        opcode = 5
	opSymlink         opcode = 6
	opMknod           opcode = 8
	opMkdir           opcode = 9
	opUnlink          opcode = 10
	opRmdir           opcode = 11
	opRename          opcode = 12
	opLink            opcode = 13
	opOpen            opcode = 14
	opRead            opcode = 15
	opWrite           opcode = 16
	opStatfs          opcode = 17
	opRelease         opcode = 18
	opFsync           opcode = 20
	opSetxattr        opcode = 21
	opGetxattr        opcode = 22
	opListxattr       opcode = 23
	opRemovexattr     opcode = 24
	opFlush           opcode = 25
	opInit            opcode = 26
	opOpendir         opcode = 27
	opReaddir         opcode = 28
	opReleasedir      opcode = 29
	opFsyncdir        opcode = 30
	opGetlk           opcode = 31
	opSetlk           opcode = 32
	opSetlkw          opcode = 33
	opAccess          opcode = 34
	opCreate          opcode = 35
	opInterrupt       opcode = 36
	opBmap            opcode = 37
	opDestroy         opcode = 38
	opIoctl           opcode = 39
	opPoll            opcode = 40
	opNotifyReply     opcode = 41
	opBatchForget     opcode = 42
	opFallocate       opcode = 43
	opReaddirplus     opcode = 44
	opRename2         opcode = 45
	opLseek           opcode = 46
	opCopyFileRange   opcode = 47
	opSetupMapping    opcode = 48
	opRemoveMapping   opcode = 49
	opSyncfs          opcode = 50
	opTmpfile         opcode = 51
	opStatx           opcode = 52
	opCopyFileRange64 opcode = 53

	// opcodeCount bounds the opcode table; anything at or above it is
	// unknown (CUSE_INIT, 4096, included).
	opcodeCount = 54
)

// Wire sizes. The go-fuse structures mirror the kernel's byte for byte; the
// sizes of the ones whose wire form is shorter than the Go type (compat forms)
// are spelled out.
const (
	inHeaderSize  = int(unsafe.Sizeof(fuse.InHeader{}))  // 40
	outHeaderSize = int(unsafe.Sizeof(fuse.OutHeader{})) // 16

	// initInMinSize is fuse_init_in up to flags, all a kernel before 7.36
	// sends; later kernels add flags2 and reserved words (64 bytes).
	initInMinSize = 16
	initInMaxSize = int(unsafe.Sizeof(fuse.InitIn{})) - inHeaderSize
	// initOutSize is fuse_init_out for every minor from 7.23 on.
	initOutSize = int(unsafe.Sizeof(fuse.InitOut{}))

	forgetOneSize = 16 // struct fuse_forget_one {nodeid, nlookup}

	// renameInSize is struct fuse_rename_in (RENAME, opcode 12): newdir only.
	renameInSize  = 8
	rename2InSize = int(unsafe.Sizeof(fuse.RenameIn{})) - inHeaderSize
	// setXAttrInCompatSize is fuse_setxattr_in without the fields
	// FUSE_SETXATTR_EXT adds.
	setXAttrInCompatSize = 8
	setXAttrInExtSize    = int(unsafe.Sizeof(fuse.SetXAttrIn{})) - inHeaderSize
	// syncfsInSize is struct fuse_syncfs_in: a single padding word.
	syncfsInSize = 8
)

// Protocol limits the request layer enforces on behalf of the filesystem.
const (
	pageSize = 4096
	// NameMax is the longest single path component (NAME_MAX) and the
	// longest extended attribute name (XATTR_NAME_MAX).
	NameMax = 255
	// pathMax bounds a symlink target including its NUL (PATH_MAX).
	pathMax = 4096
	// xattrSizeMax bounds an extended attribute value and a name list
	// (XATTR_SIZE_MAX, XATTR_LIST_MAX).
	xattrSizeMax = 65536
)

// nameKind says how one NUL-terminated string after the fixed arguments is
// validated.
type nameKind uint8

const (
	nameNone nameKind = iota
	// nameLookup is a path component looked up in a directory; "." and
	// ".." are allowed because the filesystem resolves them (export
	// support, NFS-style reconnects).
	nameLookup
	// nameEntry is a path component that is created or removed: "." and
	// ".." are refused, they can never name a new or removable entry.
	nameEntry
	// nameTarget is a symlink target: any non-empty string shorter than
	// PATH_MAX, slashes allowed.
	nameTarget
	// nameXattr is an extended attribute name: non-empty, at most
	// XATTR_NAME_MAX bytes, slashes allowed.
	nameXattr
)

// opInfo is one entry of the opcode table. The request layer checks
// everything an entry describes before the handler runs, so handlers may
// assume the header, the fixed arguments and the names are all present and
// valid.
type opInfo struct {
	name string
	// argSize is how many bytes of fixed arguments follow fuse_in_header
	// at least. The handler decodes exactly this many.
	argSize int
	// argSizeFor, when set, replaces argSize with a size that depends on
	// what INIT negotiated (SETXATTR's extended form).
	argSizeFor func(*Session) int
	// names are the NUL-terminated strings following the fixed arguments,
	// in order; nameNone ends the list.
	names [2]nameKind
	// outSize is the size of the fixed reply payload. It is checked
	// against the out buffers before the handler runs, so that an
	// operation with side effects (a lookup that takes a reference, an
	// open that creates a handle) is never performed when its reply cannot
	// be delivered. 0 for replies that are empty or of variable size.
	outSize int
	// noReply marks requests the kernel expects no answer to.
	noReply bool
	// handler serves the request; its result is the errno to answer with
	// (0 with c.payload bytes written after the out header on success).
	handler func(c *call) syscall.Errno
}

// nameCount is how many NUL-terminated strings follow the fixed arguments.
func (o *opInfo) nameCount() int {
	n := 0
	for _, k := range o.names {
		if k != nameNone {
			n++
		}
	}
	return n
}

// argSizeIn returns the fixed argument size for a request in session s.
func (o *opInfo) argSizeIn(s *Session) int {
	if o.argSizeFor != nil {
		return o.argSizeFor(s)
	}
	return o.argSize
}

// Sizes of the fixed reply payloads.
var (
	entryOutSize  = int(unsafe.Sizeof(fuse.EntryOut{}))
	attrOutSize   = int(unsafe.Sizeof(fuse.AttrOut{}))
	openOutSize   = int(unsafe.Sizeof(fuse.OpenOut{}))
	createOutSize = int(unsafe.Sizeof(fuse.CreateOut{}))
	writeOutSize  = int(unsafe.Sizeof(fuse.WriteOut{}))
	statfsOutSize = int(unsafe.Sizeof(fuse.StatfsOut{}))
	lseekOutSize  = int(unsafe.Sizeof(fuse.LseekOut{}))
)

// argSize returns the wire size of the arguments of T, a go-fuse *In
// structure that starts with fuse.InHeader.
func argSize[T any]() int {
	var v T
	return int(unsafe.Sizeof(v)) - inHeaderSize
}

// opTable is the single source of truth about every opcode the request layer
// knows. Opcodes without an entry (handler == nil) are answered with ENOSYS.
var opTable = [opcodeCount]opInfo{
	opInit:    {name: "INIT", argSize: initInMinSize, outSize: initOutSize, handler: doInit},
	opDestroy: {name: "DESTROY", handler: doDestroy},

	opLookup:      {name: "LOOKUP", names: [2]nameKind{nameLookup}, outSize: entryOutSize, handler: doLookup},
	opForget:      {name: "FORGET", argSize: argSize[fuse.ForgetIn](), noReply: true, handler: doForget},
	opBatchForget: {name: "BATCH_FORGET", argSize: 8, noReply: true, handler: doBatchForget},
	opGetattr:     {name: "GETATTR", argSize: argSize[fuse.GetAttrIn](), outSize: attrOutSize, handler: doGetAttr},
	opSetattr:     {name: "SETATTR", argSize: argSize[fuse.SetAttrIn](), outSize: attrOutSize, handler: doSetAttr},
	opReadlink:    {name: "READLINK", handler: doReadlink},
	opSymlink:     {name: "SYMLINK", names: [2]nameKind{nameEntry, nameTarget}, outSize: entryOutSize, handler: doSymlink},
	opMknod:       {name: "MKNOD", argSize: argSize[fuse.MknodIn](), names: [2]nameKind{nameEntry}, outSize: entryOutSize, handler: doMknod},
	opMkdir:       {name: "MKDIR", argSize: argSize[fuse.MkdirIn](), names: [2]nameKind{nameEntry}, outSize: entryOutSize, handler: doMkdir},
	opUnlink:      {name: "UNLINK", names: [2]nameKind{nameEntry}, handler: doUnlink},
	opRmdir:       {name: "RMDIR", names: [2]nameKind{nameEntry}, handler: doRmdir},
	opRename:      {name: "RENAME", argSize: renameInSize, names: [2]nameKind{nameEntry, nameEntry}, handler: doRename},
	opRename2:     {name: "RENAME2", argSize: rename2InSize, names: [2]nameKind{nameEntry, nameEntry}, handler: doRename},
	opLink:        {name: "LINK", argSize: argSize[fuse.LinkIn](), names: [2]nameKind{nameEntry}, outSize: entryOutSize, handler: doLink},

	opOpen:          {name: "OPEN", argSize: argSize[fuse.OpenIn](), outSize: openOutSize, handler: doOpen},
	opCreate:        {name: "CREATE", argSize: argSize[fuse.CreateIn](), names: [2]nameKind{nameEntry}, outSize: createOutSize, handler: doCreate},
	opTmpfile:       {name: "TMPFILE", argSize: argSize[fuse.CreateIn](), outSize: createOutSize, handler: doTmpfile},
	opRead:          {name: "READ", argSize: argSize[fuse.ReadIn](), handler: doRead},
	opWrite:         {name: "WRITE", argSize: argSize[fuse.WriteIn](), outSize: writeOutSize, handler: doWrite},
	opStatfs:        {name: "STATFS", outSize: statfsOutSize, handler: doStatFs},
	opRelease:       {name: "RELEASE", argSize: argSize[fuse.ReleaseIn](), handler: doRelease},
	opFlush:         {name: "FLUSH", argSize: argSize[fuse.FlushIn](), handler: doFlush},
	opFsync:         {name: "FSYNC", argSize: argSize[fuse.FsyncIn](), handler: doFsync},
	opFallocate:     {name: "FALLOCATE", argSize: argSize[fuse.FallocateIn](), handler: doFallocate},
	opLseek:         {name: "LSEEK", argSize: argSize[fuse.LseekIn](), outSize: lseekOutSize, handler: doLseek},
	opCopyFileRange: {name: "COPY_FILE_RANGE", argSize: argSize[fuse.CopyFileRangeIn](), outSize: writeOutSize, handler: doCopyFileRange},

	opOpendir:     {name: "OPENDIR", argSize: argSize[fuse.OpenIn](), outSize: openOutSize, handler: doOpenDir},
	opReaddir:     {name: "READDIR", argSize: argSize[fuse.ReadIn](), handler: doReadDir},
	opReaddirplus: {name: "READDIRPLUS", argSize: argSize[fuse.ReadIn](), handler: doReadDirPlus},
	opReleasedir:  {name: "RELEASEDIR", argSize: argSize[fuse.ReleaseIn](), handler: doReleaseDir},
	opFsyncdir:    {name: "FSYNCDIR", argSize: argSize[fuse.FsyncIn](), handler: doFsyncDir},

	opAccess:      {name: "ACCESS", argSize: argSize[fuse.AccessIn](), handler: doAccess},
	opGetxattr:    {name: "GETXATTR", argSize: argSize[fuse.GetXAttrIn](), names: [2]nameKind{nameXattr}, handler: doGetXAttr},
	opSetxattr:    {name: "SETXATTR", argSize: setXAttrInCompatSize, argSizeFor: setXAttrArgSize, names: [2]nameKind{nameXattr}, handler: doSetXAttr},
	opListxattr:   {name: "LISTXATTR", argSize: argSize[fuse.GetXAttrIn](), handler: doListXAttr},
	opRemovexattr: {name: "REMOVEXATTR", names: [2]nameKind{nameXattr}, handler: doRemoveXAttr},
	opSyncfs:      {name: "SYNCFS", argSize: syncfsInSize, handler: doSyncFS},

	// INTERRUPT is advisory: every request here runs to completion, and
	// the kernel copes with a reply to an interrupted request.
	opInterrupt: {name: "INTERRUPT", argSize: argSize[fuse.InterruptIn](), noReply: true, handler: ignore},
	// NOTIFY_REPLY answers a FUSE_NOTIFY_RETRIEVE we never send; it is
	// not a request and must not be answered.
	opNotifyReply: {name: "NOTIFY_REPLY", noReply: true, handler: ignore},

	// POSIX and BSD locks are left to the guest kernel (the lock
	// capabilities are never negotiated), so these only come from a
	// confused peer.
	opGetlk:  {name: "GETLK", handler: unsupported(syscall.ENOSYS)},
	opSetlk:  {name: "SETLK", handler: unsupported(syscall.ENOSYS)},
	opSetlkw: {name: "SETLKW", handler: unsupported(syscall.ENOSYS)},
	// ENOTTY is what ioctl(2) returns for a request the file does not know.
	opIoctl:           {name: "IOCTL", handler: unsupported(syscall.ENOTTY)},
	opBmap:            {name: "BMAP", handler: unsupported(syscall.ENOSYS)},
	opPoll:            {name: "POLL", handler: unsupported(syscall.ENOSYS)},
	opSetupMapping:    {name: "SETUPMAPPING", handler: unsupported(syscall.ENOSYS)},
	opRemoveMapping:   {name: "REMOVEMAPPING", handler: unsupported(syscall.ENOSYS)},
	opStatx:           {name: "STATX", handler: unsupported(syscall.ENOSYS)},
	opCopyFileRange64: {name: "COPY_FILE_RANGE_64", handler: unsupported(syscall.ENOSYS)},
}

// lookupOp returns the table entry for op, or nil when op is unknown.
func lookupOp(op uint32) *opInfo {
	if op >= opcodeCount {
		return nil
	}
	info := &opTable[op]
	if info.handler == nil {
		return nil
	}
	return info
}

// setXAttrArgSize is SETXATTR's fixed argument size: the kernel sends the
// extended fuse_setxattr_in only once FUSE_SETXATTR_EXT was negotiated.
func setXAttrArgSize(s *Session) int {
	if s.Has(fuse.CAP_SETXATTR_EXT) {
		return setXAttrInExtSize
	}
	return setXAttrInCompatSize
}

// ignore serves the requests that are dropped without a word.
func ignore(*call) syscall.Errno { return 0 }

// unsupported returns a handler that answers every request with errno.
func unsupported(errno syscall.Errno) func(*call) syscall.Errno {
	return func(*call) syscall.Errno { return errno }
}
