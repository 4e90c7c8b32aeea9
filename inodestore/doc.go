// Package inodestore is ferryfs's inode table: the host objects the guest
// knows, each under a FUSE node id, and the files and directories it holds
// open, each under a handle id.
//
// An inode refers to its host object by an O_PATH file descriptor or by a
// file handle (name_to_handle_at, re-opened with open_by_handle_at through one
// descriptor per mount). Known host objects are found again by their identity
// — (st_dev, st_ino, mount id) for descriptor references, the file handle for
// handle references — so hard links, repeated lookups and racing lookups of
// one object all get the same node id.
//
// Lifetimes: an inode lives while the kernel holds lookups on it (the lookup
// count) or while a request is using it (the reference count). The host
// reference is closed when both reach zero, so a FORGET racing a request
// never closes a descriptor under the request's feet.
//
// Lock order: Store.mu before Store.handlesMu; neither is held across a
// system call that can block on the host filesystem, except the close of a
// descriptor.
package inodestore
