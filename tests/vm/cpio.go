package vm

import (
	"fmt"
	"io"
	"path"
	"syscall"
)

// cpioWriter writes the "newc" cpio format (the kernel's initramfs format,
// as `cpio -o -H newc` writes it): per entry, a 110-byte ASCII header of
// thirteen 8-digit hex fields, the NUL-terminated name padded to a multiple
// of four bytes, then the data padded likewise; a "TRAILER!!!" entry ends
// the archive. Directories must come before what they hold.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

// cpioEntry is one archive member. For a symlink, data is the target.
type cpioEntry struct {
	name  string // path without a leading slash
	mode  uint32 // file type and permission bits (syscall.S_IF* | perm)
	data  []byte
	major uint32 // device numbers of a device node
	minor uint32
}

// add writes one entry; errors stick and are returned by close.
func (c *cpioWriter) add(e cpioEntry) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if e.mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	name := path.Clean(e.name)
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
	c.write(e.data)
	c.pad(len(e.data))
}

// close writes the trailer and returns the first error.
func (c *cpioWriter) close() error {
	c.add(cpioEntry{name: "TRAILER!!!"})
	return c.err
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// pad writes the NULs that bring n written bytes to a multiple of four.
func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
