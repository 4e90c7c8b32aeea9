package idmap

import "strconv"

// GuestUID is a user id as the guest sees it: in a request header, in the
// owner SETATTR asks for, in the attributes of a reply.
type GuestUID uint32

// HostUID is a user id on the host: what system calls take and return.
type HostUID uint32

// GuestGID is a group id as the guest sees it.
type GuestGID uint32

// HostGID is a group id on the host.
type HostGID uint32

// NoID is the id (uid_t)-1, 4294967295, which chown(2) and setfsuid(2) take
// to mean "leave unchanged". No rule may name it, so it always maps to
// itself, and ToHost returns it (typed) alongside an error, so that a
// caller who ignores the error gets no real id, least of all root.
const NoID = 1<<32 - 1

// MaxID is the largest id a rule or a namespace map may name: one below
// [NoID]. Every range of a rule or extent, START to START+COUNT-1, must end
// at or below it: virtiofsd demands so of a rule's source range, the kernel
// of both ranges of a uid_map line, and this package of all of them.
const MaxID = NoID - 1

// Kind says whether ids are user ids or group ids. It names the flags and
// the ids in error messages.
type Kind uint8

// The two kinds of id.
const (
	UID Kind = iota + 1
	GID
)

// String returns "UID" or "GID".
func (k Kind) String() string {
	switch k {
	case UID:
		return "UID"
	case GID:
		return "GID"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// TranslateFlag returns the daemon flag that carries translation rules for
// this kind of id: "--translate-uid" or "--translate-gid".
func (k Kind) TranslateFlag() string {
	if k == GID {
		return "--translate-gid"
	}
	return "--translate-uid"
}

// NamespaceFlag returns the daemon flag that carries user namespace maps for
// this kind of id: "--uid-map" or "--gid-map".
func (k Kind) NamespaceFlag() string {
	if k == GID {
		return "--gid-map"
	}
	return "--uid-map"
}

// overlaps is the verb for span(side, k, first, last) as a subject.
func overlaps(first, last uint32) string {
	if first == last {
		return "overlaps"
	}
	return "overlap"
}

// span describes the inclusive id range first..last for messages:
// "guest UIDs 5-14", or "guest UID 5" for a single id. side is "guest",
// "host" or "namespace".
func span(side string, k Kind, first, last uint32) string {
	if first == last {
		return side + " " + k.String() + " " + strconv.FormatUint(uint64(first), 10)
	}
	return side + " " + k.String() + "s " + strconv.FormatUint(uint64(first), 10) + "-" + strconv.FormatUint(uint64(last), 10)
}
