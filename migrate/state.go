// Package migrate is ferryfs's migration state: what a source daemon sends
// so that a destination daemon can serve the same guest without the guest
// noticing. It holds the state model, its versioned encoding and the checks
// a decoded state must pass before anything is applied.
//
// The state is the negotiated FUSE session (the destination never sees
// INIT), every inode the guest knows (node id, lookup count and how to find
// the host object again), every open handle (id, node, open flags), the id
// counters, and the options both daemons must agree on.
//
// How an inode is found again depends on the mode (--migration-mode):
// find-paths sends a parent node and a name per inode, so the destination
// walks from the shared directory; file-handles sends the file handle and
// its mount. A state decoded from bytes is untrusted until Validate accepts
// it: names are single path components, parents exist and lead to the root,
// handles point at known inodes.
package migrate

import (
	"errors"
	"fmt"
	"strings"
)

// Mode is how inodes are found on the destination.
type Mode string

const (
	// FindPaths sends each inode as its parent's node id and its name.
	FindPaths Mode = "find-paths"
	// FileHandles sends each inode's file handle and mount id.
	FileHandles Mode = "file-handles"
)

// ParseMode parses a --migration-mode value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case FindPaths, FileHandles:
		return Mode(s), nil
	}
	return "", fmt.Errorf("invalid migration mode %q: want find-paths or file-handles", s)
}

// OnError is what a destination does with an inode or handle it cannot
// find or re-open.
type OnError string

const (
	// Abort fails the whole migration; the source keeps running.
	Abort OnError = "abort"
	// GuestError migrates everything else; the lost inodes and handles
	// answer the guest with an error.
	GuestError OnError = "guest-error"
)

// ParseOnError parses a --migration-on-error value.
func ParseOnError(s string) (OnError, error) {
	switch OnError(s) {
	case Abort, GuestError:
		return OnError(s), nil
	}
	return "", fmt.Errorf("invalid --migration-on-error %q: want abort or guest-error", s)
}

// RootID is the node id of the shared directory.
const RootID = 1

// State is everything a destination needs. Inodes and Handles are sorted
// by id, so that one state always encodes to the same bytes.
type State struct {
	Mode    Mode    `msgpack:"mode"`
	Session Session `msgpack:"session"`
	Options Options `msgpack:"options"`
	// NextNode and NextHandle are the next ids the source would have
	// handed out: the destination continues from there, so an id the
	// guest forgot is not reused while the guest may still send it.
	NextNode   uint64   `msgpack:"next_node"`
	NextHandle uint64   `msgpack:"next_handle"`
	Inodes     []Inode  `msgpack:"inodes"`
	Handles    []Handle `msgpack:"handles"`
}

// Mounted reports whether the guest had mounted the file system: a state
// without a session is that of a guest that never sent INIT (or unmounted),
// and the destination waits for INIT as a fresh daemon does.
func (s *State) Mounted() bool { return s.Session != (Session{}) }

// Session is what FUSE_INIT settled (fuseproto.Session); all zero when the
// guest had not mounted.
type Session struct {
	Major        uint32 `msgpack:"major"`
	Minor        uint32 `msgpack:"minor"`
	Flags        uint64 `msgpack:"flags"`
	MaxWrite     uint32 `msgpack:"max_write"`
	MaxReadahead uint32 `msgpack:"max_readahead"`
	MaxPages     uint16 `msgpack:"max_pages"`
	TimeGran     uint32 `msgpack:"time_gran"`
}

// Options are the settings that change what the guest sees: a destination
// started with different ones would serve the guest a different file
// system, so a mismatch refuses the state before anything is applied.
type Options struct {
	Cache            string   `msgpack:"cache"`
	Writeback        bool     `msgpack:"writeback"`
	Readonly         bool     `msgpack:"readonly"`
	Xattr            bool     `msgpack:"xattr"`
	PosixACL         bool     `msgpack:"posix_acl"`
	SecurityLabel    bool     `msgpack:"security_label"`
	XattrMap         string   `msgpack:"xattrmap"`
	TranslateUID     []string `msgpack:"translate_uid"`
	TranslateGID     []string `msgpack:"translate_gid"`
	AnnounceSubmount bool     `msgpack:"announce_submounts"`
	KillprivV2       bool     `msgpack:"killpriv_v2"`
}

// Diff lists, one per line, how o differs from want; empty when they agree.
func (o Options) Diff(want Options) []string {
	var d []string
	add := func(name string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			d = append(d, fmt.Sprintf("%s: source %v, destination %v", name, got, want))
		}
	}
	add("cache", o.Cache, want.Cache)
	add("writeback", o.Writeback, want.Writeback)
	add("readonly", o.Readonly, want.Readonly)
	add("xattr", o.Xattr, want.Xattr)
	add("posix-acl", o.PosixACL, want.PosixACL)
	add("security-label", o.SecurityLabel, want.SecurityLabel)
	add("xattrmap", fmt.Sprintf("%q", o.XattrMap), fmt.Sprintf("%q", want.XattrMap))
	add("translate-uid", o.TranslateUID, want.TranslateUID)
	add("translate-gid", o.TranslateGID, want.TranslateGID)
	add("announce-submounts", o.AnnounceSubmount, want.AnnounceSubmount)
	add("killpriv-v2", o.KillprivV2, want.KillprivV2)
	return d
}

// Inode is one inode the guest knows.
type Inode struct {
	ID      uint64 `msgpack:"id"`
	Lookups uint64 `msgpack:"lookups"`
	// Type is the S_IFMT bits of the object.
	Type uint32 `msgpack:"type"`
	// Parent and Name locate the object in find-paths mode: Name in the
	// directory Parent. Name is usually one component; it is a relative
	// path when the guest no longer knows the directories in between. The
	// root has neither.
	Parent uint64 `msgpack:"parent,omitempty"`
	Name   string `msgpack:"name,omitempty"`
	// Handle locates the object in file-handles mode. In find-paths mode
	// it is optional (--migration-verify-handles): the destination then
	// checks that the path led it to this very object.
	Handle *FileHandle `msgpack:"handle,omitempty"`
	// Unlinked marks a regular file the guest removed while it held it
	// open: it has no name the guest knows, and Parent (the root) and Name
	// (two components) say where the hidden directory of the shared
	// directory keeps it (passthrough.OrphanDir), in both modes. The
	// destination removes that name when the guest closes the file.
	Unlinked bool `msgpack:"unlinked,omitempty"`
	// Invalid says why the source could not describe the object; the
	// destination fails it (guest-error) or the migration (abort). Its
	// Parent is 0, or the root for an unlinked file; Validate refuses
	// any other, which it could not check.
	Invalid string `msgpack:"invalid,omitempty"`
	// Gone qualifies Invalid: the object was removed on the host and the
	// guest holds no handle of it, only a cached entry, which the source
	// would answer with ENOENT at its next lookup too. A destination
	// installs it as lost (ESTALE) without failing the migration, even
	// with abort: nothing the guest could still reach is lost.
	Gone bool `msgpack:"gone,omitempty"`
	// Lost qualifies Invalid too: an earlier migration lost the object
	// (--migration-on-error=guest-error), and the source answers the guest
	// with this errno for it. A destination installs it as lost with the
	// same errno, even with abort: the guest already gets errors for it,
	// and failing every later migration over it would keep the guest on
	// the source for good.
	Lost uint32 `msgpack:"lost,omitempty"`
}

// LostAtSource reports whether the source itself could no longer reach the
// object (Gone or Lost): a destination installs it as lost without failing
// the migration.
func (i *Inode) LostAtSource() bool { return i.Gone || i.Lost != 0 }

// FileHandle is a file handle from name_to_handle_at with the mount it
// belongs to.
type FileHandle struct {
	MountID uint64 `msgpack:"mount_id"`
	Type    int32  `msgpack:"type"`
	Bytes   []byte `msgpack:"bytes"`
}

// Handle is one open file or directory handle.
type Handle struct {
	ID   uint64 `msgpack:"id"`
	Node uint64 `msgpack:"node"`
	// Flags are the host open flags the handle was opened with.
	Flags int32 `msgpack:"flags"`
	// GuestFlags are the open flags the guest asked for.
	GuestFlags uint32 `msgpack:"guest_flags"`
	// Lost is the errno the source answers for a handle an earlier
	// migration could not re-open; a destination installs the handle as
	// lost with it, without trying to re-open it, whatever its
	// --migration-on-error. 0 for a usable handle.
	Lost uint32 `msgpack:"lost,omitempty"`
}

// MaxNextID bounds NextNode and NextHandle, so that ids stay below 1<<63
// (inodestore.MaxID): a destination continuing from a counter a state set
// near 1<<64 would wrap round to ids in use, the root's among them. A
// guest that made a million inodes a second would need 290,000 years to
// get there.
const MaxNextID = 1 << 63

// Limits on what a state may hold: enough for any real guest, small enough
// that a hostile state cannot make the destination allocate without bound.
const (
	MaxInodes      = 1 << 26
	MaxHandles     = 1 << 24
	maxNameLen     = 255
	maxPathLen     = 4095
	maxHandleBytes = 128  // MAX_HANDLE_SZ
	maxErrno       = 4095 // the kernel's MAX_ERRNO
	maxOptionText  = 1 << 16
)

// Validate checks a state's inner consistency: the ids, the root, that
// every parent exists and leads to the root without a cycle (an invalid
// inode's parent is 0 or the root), that every name is a single path
// component, that every handle belongs to a known inode, and that the
// counters are past every id and at most MaxNextID. It reports the
// problems in the order of the entries, up to 20, and costs time linear in
// the number of inodes however deep the tree.
func (s *State) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	if _, err := ParseMode(string(s.Mode)); err != nil {
		bad("%v", err)
	}
	if s.Mounted() {
		if s.Session.Major != 7 || s.Session.Minor < 27 {
			bad("FUSE session %d.%d: want 7.27 or newer", s.Session.Major, s.Session.Minor)
		}
	} else if len(s.Inodes) > 1 || len(s.Handles) > 0 {
		bad("no FUSE session, yet %d inodes and %d handles: a guest that has not mounted knows only the root", len(s.Inodes), len(s.Handles))
	}
	if len(s.Options.XattrMap) > maxOptionText || len(s.Options.TranslateUID) > 1000 || len(s.Options.TranslateGID) > 1000 {
		bad("options too large")
	}
	if s.NextNode < RootID+1 || s.NextNode > MaxNextID {
		bad("next node id %d outside %d..%d", s.NextNode, RootID+1, uint64(MaxNextID))
	}
	if s.NextHandle < 1 || s.NextHandle > MaxNextID {
		bad("next handle id %d outside 1..%d", s.NextHandle, uint64(MaxNextID))
	}
	if len(s.Inodes) > MaxInodes || len(s.Handles) > MaxHandles {
		bad("%d inodes and %d handles: at most %d and %d", len(s.Inodes), len(s.Handles), MaxInodes, MaxHandles)
		return errors.Join(errs...)
	}
	byID := make(map[uint64]int, len(s.Inodes)) // index in s.Inodes
	for k := range s.Inodes {
		i := &s.Inodes[k]
		if k > 0 && s.Inodes[k-1].ID >= i.ID {
			bad("inodes not sorted by id at %d (id %d after %d)", k, i.ID, s.Inodes[k-1].ID)
		}
		if i.ID == 0 || i.ID >= s.NextNode {
			bad("inode id %d outside 1..%d", i.ID, s.NextNode-1)
		}
		byID[i.ID] = k
		if i.ID != RootID && i.Lookups == 0 && i.Invalid == "" {
			bad("inode %d has no lookups: the guest does not know it", i.ID)
		}
		if i.LostAtSource() && i.Invalid == "" {
			bad("inode %d: gone or lost, but no reason given", i.ID)
		}
		if i.Lost > maxErrno {
			bad("inode %d: lost with errno %d, not an errno", i.ID, i.Lost)
		}
		if i.Invalid != "" {
			continue
		}
		if i.Unlinked && (i.Type != 0o100000 || i.Parent != RootID || strings.Count(i.Name, "/") != 1 || !validRelPath(i.Name)) {
			bad("inode %d: an unlinked file must be a regular file named by a directory and a name below the root", i.ID)
		}
		switch s.Mode {
		case FindPaths:
			if i.ID == RootID {
				if i.Parent != 0 || i.Name != "" {
					bad("root inode has a parent")
				}
				continue
			}
			if !validRelPath(i.Name) {
				bad("inode %d: name %q is not a relative path of valid components", i.ID, i.Name)
			}
			if i.Handle != nil && !validHandle(i.Handle) {
				bad("inode %d: invalid file handle to verify its path by", i.ID)
			}
		case FileHandles:
			if i.ID == RootID {
				continue
			}
			if !validHandle(i.Handle) {
				bad("inode %d: no valid file handle", i.ID)
			}
		}
	}
	if root, ok := byID[RootID]; !ok || s.Inodes[root].Type != 0o040000 {
		bad("no root directory inode")
	}
	if s.Mode == FindPaths {
		checkParents(s.Inodes, byID, bad)
	}
	for k, h := range s.Handles {
		if k > 0 && s.Handles[k-1].ID >= h.ID {
			bad("handles not sorted by id at %d", k)
		}
		if h.ID >= s.NextHandle {
			bad("handle id %d not below the next handle id %d", h.ID, s.NextHandle)
		}
		if h.Lost > maxErrno {
			bad("handle %d: lost with errno %d, not an errno", h.ID, h.Lost)
		}
		if k, ok := byID[h.Node]; !ok {
			bad("handle %d: node %d is not in the state", h.ID, h.Node)
		} else if i := &s.Inodes[k]; i.Gone {
			bad("handle %d: node %d is open, yet marked gone", h.ID, h.Node)
		} else if i.Lost != 0 && h.Lost == 0 {
			bad("handle %d: node %d was lost by an earlier migration, yet the handle was not", h.ID, h.Node)
		}
	}
	return errors.Join(errs...)
}

// Verdicts of checkParents on an inode's chain of parents.
const (
	unchecked uint8 = iota
	onChain         // being followed: meeting it again is a cycle
	leadsToRoot
	broken // reported where it breaks; the inodes below stay silent
)

// checkParents checks, in find-paths mode, that every inode's parents
// exist, are directories and lead to the root without a cycle. Each chain
// is followed only up to the first inode already checked, and every inode
// on it takes that one's verdict, so the work is linear in the number of
// inodes however deep the tree: following every chain to the root would be
// quadratic in its depth. It returns the number of steps taken, for tests
// to hold it to that.
func checkParents(inodes []Inode, byID map[uint64]int, bad func(string, ...any)) (steps int) {
	verdict := make([]uint8, len(inodes))
	var followed []int
	for k := range inodes {
		if verdict[k] != unchecked {
			continue
		}
		followed = followed[:0]
		v := broken
		for x := k; ; {
			steps++
			i := &inodes[x]
			if verdict[x] == onChain {
				bad("inode %d: its parents form a cycle", i.ID)
				break
			}
			if verdict[x] != unchecked {
				v = verdict[x]
				break
			}
			verdict[x] = onChain
			followed = append(followed, x)
			if i.ID == RootID {
				v = leadsToRoot
				break
			}
			if i.Invalid != "" {
				// The source could not place it, so it has no parent
				// (or the root, which keeps an unlinked file's
				// orphan directory): its other fields are not
				// checked, and a parent leading anywhere else could
				// hide a cycle. What the guest knows below it is lost
				// with it.
				if i.Parent != 0 && i.Parent != RootID {
					bad("inode %d: invalid, yet its parent is %d: an invalid inode's parent is 0 or the root", i.ID, i.Parent)
					break
				}
				v = leadsToRoot
				break
			}
			p, ok := byID[i.Parent]
			if !ok {
				bad("inode %d: parent %d is not in the state", i.ID, i.Parent)
				break
			}
			if inodes[p].Type != 0o040000 {
				bad("inode %d: parent %d is not a directory", i.ID, i.Parent)
				break
			}
			x = p
		}
		for _, x := range followed {
			verdict[x] = v
		}
	}
	return steps
}

// validHandle reports whether h is a file handle open_by_handle_at could
// take.
func validHandle(h *FileHandle) bool {
	return h != nil && len(h.Bytes) > 0 && len(h.Bytes) <= maxHandleBytes
}

// validName reports whether name is one path component.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxNameLen && !strings.ContainsAny(name, "/\x00")
}

// validRelPath reports whether p is a relative path of valid components:
// usually one (a name in the parent directory), several when the guest
// forgot the directories in between.
func validRelPath(p string) bool {
	if len(p) > maxPathLen {
		return false
	}
	// Cut rather than Split: a slice of components per inode would
	// make validation allocate several times a state's size.
	for {
		c, rest, more := strings.Cut(p, "/")
		if !validName(c) {
			return false
		}
		if !more {
			return true
		}
		p = rest
	}
}

// Path reconstructs the path of inode id relative to the shared directory
// in find-paths mode, following the parents. ok is false when the chain is
// broken or loops.
func (s *State) Path(id uint64) (path string, ok bool) {
	byID := make(map[uint64]*Inode, len(s.Inodes))
	for k := range s.Inodes {
		byID[s.Inodes[k].ID] = &s.Inodes[k]
	}
	return pathIn(byID, id)
}

func pathIn(byID map[uint64]*Inode, id uint64) (string, bool) {
	var parts []string
	for steps := 0; id != RootID; steps++ {
		i, ok := byID[id]
		if !ok || i.Invalid != "" || steps > len(byID) || i.Name == "" {
			return "", false
		}
		parts = append(parts, i.Name)
		id = i.Parent
	}
	for l, r := 0, len(parts)-1; l < r; l, r = l+1, r-1 {
		parts[l], parts[r] = parts[r], parts[l]
	}
	return strings.Join(parts, "/"), true
}

// maxShownPath bounds the paths Paths gives.
const maxShownPath = 128

// cutMark starts a path Paths cut.
const cutMark = "…"

// Paths returns the path of every inode that has one, as Path would, for
// messages: a path longer than maxShownPath bytes is cut to its last bytes
// after "…". Describing every inode of a deep tree by its full path would
// cost the sum of the paths' lengths, quadratic in the depth; cut, each
// path costs a bounded amount, computed once from its parent's. A cut
// path cannot be opened: Verify builds the paths it opens one at a time.
func (s *State) Paths() map[uint64]string {
	byID := make(map[uint64]int, len(s.Inodes))
	for k := range s.Inodes {
		byID[s.Inodes[k].ID] = k
	}
	shown := make([]string, len(s.Inodes))
	cut := make([]bool, len(s.Inodes))
	verdict := make([]uint8, len(s.Inodes))
	var followed []int
	for k := range s.Inodes {
		if verdict[k] != unchecked {
			continue
		}
		// Follow the parents up to an inode whose path is known (or
		// known not to exist), then build the paths on the way back.
		followed = followed[:0]
		v, base := broken, -1
		for x := k; ; {
			i := &s.Inodes[x]
			if verdict[x] == onChain {
				break // a cycle: no path
			}
			if verdict[x] != unchecked {
				v, base = verdict[x], x
				break
			}
			if i.ID == RootID {
				verdict[x] = leadsToRoot
				v, base = leadsToRoot, x
				break
			}
			verdict[x] = onChain
			followed = append(followed, x)
			p, ok := byID[i.Parent]
			if i.Invalid != "" || i.Name == "" || !ok {
				break
			}
			x = p
		}
		for j := len(followed) - 1; j >= 0; j-- {
			x := followed[j]
			verdict[x] = v
			if v == leadsToRoot {
				shown[x], cut[x] = shownJoin(shown[base], cut[base], s.Inodes[x].Name)
				base = x
			}
		}
	}
	paths := make(map[uint64]string, len(s.Inodes))
	for k := range s.Inodes {
		if verdict[k] != leadsToRoot {
			continue
		}
		p := shown[k]
		if cut[k] {
			p = cutMark + p
		}
		paths[s.Inodes[k].ID] = p
	}
	return paths
}

// shownJoin is name in the directory whose path (cut when parentCut) is
// parent, cut to its last maxShownPath bytes when longer.
func shownJoin(parent string, parentCut bool, name string) (string, bool) {
	if parent == "" && !parentCut {
		if len(name) <= maxShownPath {
			return name, false
		}
		return name[len(name)-maxShownPath:], true
	}
	if n := len(parent) + 1 + len(name); n <= maxShownPath && !parentCut {
		return parent + "/" + name, false
	}
	b := make([]byte, 0, maxShownPath)
	if len(name) >= maxShownPath {
		b = append(b, name[len(name)-maxShownPath:]...)
	} else {
		keep := maxShownPath - len(name) - 1
		b = append(b, parent[max(0, len(parent)-keep):]...)
		b = append(b, '/')
		b = append(b, name...)
	}
	return string(b), true
}

// parentsFirst orders the indexes of inodes so that every inode comes
// after its parent (as Parent names it in byID), computed as
// checkParents does, each chain followed once; an inode on a loop comes
// after the rest of the loop.
func parentsFirst(inodes []Inode, byID map[uint64]int) []int {
	order := make([]int, 0, len(inodes))
	placed := make([]bool, len(inodes))
	var chain []int
	for k := range inodes {
		chain = chain[:0]
		for x := k; !placed[x]; {
			placed[x] = true
			chain = append(chain, x)
			p, ok := byID[inodes[x].Parent]
			if !ok || inodes[x].ID == RootID {
				break
			}
			x = p
		}
		for j := len(chain) - 1; j >= 0; j-- {
			order = append(order, chain[j])
		}
	}
	return order
}

// pathUpTo is inode k's path, as Path gives it, when the state has one of
// at most limit bytes; tooLong says it is longer. Every step up adds a
// name and a slash, so it takes at most limit/2+1 steps, however deep the
// tree.
func pathUpTo(inodes []Inode, byID map[uint64]int, k, limit int) (p string, tooLong, ok bool) {
	var chain []int
	n := -1
	for x := k; inodes[x].ID != RootID; {
		i := &inodes[x]
		if i.Invalid != "" || i.Name == "" {
			return "", false, false
		}
		if n += len(i.Name) + 1; n > limit {
			return "", true, false
		}
		chain = append(chain, x)
		parent, ok := byID[i.Parent]
		if !ok {
			return "", false, false
		}
		x = parent
	}
	b := make([]byte, 0, max(n, 0))
	for j := len(chain) - 1; j >= 0; j-- {
		if len(b) > 0 {
			b = append(b, '/')
		}
		b = append(b, inodes[chain[j]].Name...)
	}
	return string(b), false, true
}
