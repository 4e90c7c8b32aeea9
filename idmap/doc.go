// Package idmap translates user and group ids between the guest and the host,
// as virtiofsd's --translate-uid and --translate-gid flags ask, and parses
// the --uid-map and --gid-map flags, which map ids into the user namespace
// the daemon's sandbox runs in.
//
// # Two id spaces, two directions
//
// The guest and the host each have their own UIDs and GIDs. Four distinct
// types keep them apart: [GuestUID], [HostUID], [GuestGID] and [HostGID].
// Each is a uint32, but none converts to another without a visible call,
// so a guest id cannot reach a system call, nor a host id a reply, by
// accident:
//
//   - Guest to host ([UIDMap.ToHost], [GIDMap.ToHost]) applies to every id
//     that comes from the guest: the uid and gid in a request's header, which
//     become the credentials a new file, directory, node or symlink is
//     created with; the supplementary group of the FUSE_EXT_GROUPS
//     extension; the owner and group that SETATTR asks for (chown). This
//     direction can fail: a forbid-guest rule refuses the id, and the request
//     fails with EPERM (see [ForbiddenError]).
//   - Host to guest ([UIDMap.ToGuest], [GIDMap.ToGuest]) applies to every id
//     that goes to the guest: the st_uid and st_gid in the attributes of
//     LOOKUP, GETATTR, SETATTR, CREATE, MKNOD, MKDIR, SYMLINK, LINK and
//     READDIRPLUS replies, and the owner an ACCESS check compares with the
//     caller's guest ids. This direction cannot fail.
//
// The two directions are independent: a rule maps one direction only,
// except map, which maps both. An id no rule covers maps to the same number
// (identity) in either direction, so with no rules at all both directions
// are the identity, at the cost of one branch per call. The zero [UIDMap]
// and [GIDMap] are such identity maps.
//
// Ids inside extended attributes (POSIX ACLs, the root id of
// security.capability) are not translated, which is why virtiofsd refuses
// --translate-uid and --translate-gid together with --posix-acl.
//
// # Translation rules
//
// Each --translate-uid or --translate-gid value is one rule, TYPE:A:B:COUNT,
// one of:
//
//	guest:GUEST:HOST:COUNT         guest GUEST+i -> host HOST+i      (guest to host only)
//	host:HOST:GUEST:COUNT          host HOST+i   -> guest GUEST+i    (host to guest only)
//	map:GUEST:HOST:COUNT           both of the above
//	squash-guest:GUEST:HOST:COUNT  guest GUEST+i -> host HOST        (guest to host only)
//	squash-host:HOST:GUEST:COUNT   host HOST+i   -> guest GUEST      (host to guest only)
//	forbid-guest:GUEST:COUNT       guest GUEST+i is refused          (guest to host only)
//
// for 0 <= i < COUNT. The flags repeat, one rule per value, and the source
// ranges of the rules of one flag must not overlap within a direction (a
// map rule's guest range counts for guest to host, its host range for host
// to guest). See [ParseRule] for the exact syntax accepted, which is
// virtiofsd's.
//
// # User namespace maps
//
// --uid-map and --gid-map take :NAMESPACE_ID:HOST_ID:COUNT: and are not
// translated by the daemon at all: they become lines of /proc/PID/uid_map
// and /proc/PID/gid_map (or arguments of newuidmap and newgidmap) of the
// sandboxed daemon. [ParseNamespaceMap] parses and checks them against the
// kernel's rules; [NamespaceMap.ProcText] and [NamespaceMap.NewIDMapArgs]
// format them.
package idmap
