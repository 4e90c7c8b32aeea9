// Package xattrmap implements virtiofsd's --xattrmap rule language, which
// maps extended attribute names between the guest (the "client") and the
// host file system (the "server"), so that, for instance, a guest's
// security.* labels are stored on the host as user.virtiofs.security.* and
// never become the host's own.
//
// A rule string is compiled once with [Parse] (or [New] from [Rule]
// values) into an immutable [Map], safe for concurrent use. A nil *Map is
// the identity mapping (no --xattrmap given).
//
// # Grammar
//
// A mapping is a sequence of rules. Each rule is written
//
//	<sep>type<sep>scope<sep>key<sep>prepend<sep>
//
// where <sep> is the first character of the rule: any character that is
// not white space (a multi-byte UTF-8 character counts as one character;
// a byte that is not valid UTF-8 is a one-byte separator). The separator
// only has to be consistent within one rule. White space (space, \t, \n,
// \v, \f, \r) may appear before, between and after rules, never inside the
// type and scope fields; rules may also follow each other directly, as in
// ":prefix:all::user.virtiofs.::bad:all:::". The key and prepend fields are
// taken verbatim (white space included) and may be empty; they may not
// contain a NUL byte.
//
// type is one of prefix, ok, bad, unsupported; scope is one of client,
// server, all. The sugar
//
//	<sep>map<sep>key<sep>prepend<sep>
//
// may appear at most once, as the last rule (only white space may follow
// it). It expands, exactly as virtiofsd's documentation spells it out, to
//
//	key empty:      :prefix:all::prepend:  :bad:all:::
//	key non-empty:  :prefix:all:key:prepend:  :bad:server::key:
//	                :bad:client:prepend::     :ok:all:::
//
// that is: prefix the names matching key (all names if key is empty), hide
// host names that match key without carrying prepend, refuse guest access
// to prepend-prefixed names (which would bypass the mapping), let the rest
// through unchanged. (The Rust virtiofsd merges the two bad rules into one
// :bad:all:prepend:key: rule; the behaviour is identical.)
//
// Parse errors are [*ParseError] values giving the byte offset in the input,
// the 1-based number of the rule as written, what was expected there and
// what was found.
//
// # Semantics
//
// Names are matched by byte prefix, the rules being tried in order and the
// first rule that applies deciding. Which rules apply, and on which field,
// depends on the direction:
//
//   - Client direction, guest -> host ([Map.ToHost], [Map.AppendHost],
//     [Map.HostNameOf]; for getxattr, setxattr, removexattr and the
//     security context of a new node): only rules of scope client or all
//     take part, and a rule applies when its key is a prefix of the guest's
//     name.
//   - Server direction, host -> guest ([Map.ToGuest], [Map.FilterList]; for
//     listxattr): only rules of scope server or all take part, and a rule
//     applies when its prepend is a prefix of the host's name. The key plays
//     no part in this direction.
//
// What the deciding rule does:
//
//	type         client direction (key matched)   server direction (prepend matched)
//	prefix       host name = prepend + guest name  guest name = host name minus prepend
//	ok           name passed unchanged             name listed unchanged
//	bad          refused with EPERM                name hidden from the list
//	unsupported  refused with ENOTSUP              name hidden from the list
//
// A rule of scope all behaves in each direction as the client or server
// rule would; "ok" and "bad" with empty key and prepend (":ok:all:::",
// ":bad:all:::") are the usual catch-all terminators.
//
// virtiofsd's documentation requires every name to be matched by some
// rule. When none applies, this package behaves like an implicit final
// ":bad:all:::" rule (as QEMU's C virtiofsd did): guest names are refused
// with EPERM and host names are hidden. (The Rust virtiofsd panics in that
// case.) [Map.Terminated] reports whether the rules have an explicit
// catch-all in both directions.
//
// Notes for the caller, following virtiofsd:
//
//   - getxattr reports a name refused with EPERM (a bad rule) as ENODATA,
//     so the guest sees "no such attribute"; setxattr and removexattr
//     report EPERM. ENOTSUP is reported as is.
//   - The server direction only ever removes names or shortens them, so
//     [Map.FilterList] works in place, and the size a listxattr size probe
//     (size 0) reports may be the host's unmapped size: an upper bound.
//   - A host name that is exactly a prefix rule's prepend maps to the empty
//     name; no guest can use an empty name, so it is hidden. (virtiofsd
//     would list an empty name.)
//   - The directions are not inverses of each other in general. For a map
//     built by the map sugar (or the prefix-all idiom), a guest name that
//     ToHost accepts lists back as itself; but a host name may list as a
//     guest name that ToHost maps elsewhere, e.g. with
//     ":map:trusted.:user.virtiofs.:" the host name user.virtiofs.foo
//     lists as "foo", which ToHost passes through as host "foo".
//
// # security.capability
//
// The host kernel removes security.capability from a file when it is
// written, truncated or chowned. When the guest's security.capability is
// stored under another host name, the host kernel no longer does that, so
// the daemon must remove the mapped name itself on those operations;
// [Map.SecurityCapability] gives that host name. If the map refuses
// security.capability, or maps it to itself, there is nothing to do (as in
// the Rust virtiofsd; the C one refused to start when it was refused).
package xattrmap
