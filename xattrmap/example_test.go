package xattrmap_test

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ferryfs/ferryfs/xattrmap"
)

func Example() {
	// Store every guest attribute under user.virtiofs. on the host; hide
	// the host's own attributes from the guest.
	m, err := xattrmap.Parse(":map::user.virtiofs.:")
	if err != nil {
		panic(err)
	}
	host, _ := m.ToHost("security.selinux")
	fmt.Println(host)

	list, _ := m.FilterList([]byte("user.virtiofs.security.selinux\x00security.selinux\x00user.virtiofs.user.foo\x00"))
	fmt.Printf("%q\n", list)

	capName, remapped := m.SecurityCapability()
	fmt.Println(capName, remapped)
	fmt.Println(m)
	// Output:
	// user.virtiofs.security.selinux
	// "security.selinux\x00user.foo\x00"
	// user.virtiofs.security.capability true
	// :prefix:all::user.virtiofs.: :bad:all:::
}

func ExampleMap_ToHost() {
	m := xattrmap.MustParse("/map/trusted./user.virtiofs./")
	for _, guest := range []string{"trusted.overlay.opaque", "user.foo", "user.virtiofs.trusted.overlay.opaque"} {
		host, err := m.ToHost(guest)
		var errno syscall.Errno
		if errors.As(err, &errno) {
			fmt.Printf("%s: errno %d (%v)\n", guest, int(errno), errno)
			continue
		}
		fmt.Printf("%s -> %s\n", guest, host)
	}
	// Output:
	// trusted.overlay.opaque -> user.virtiofs.trusted.overlay.opaque
	// user.foo -> user.foo
	// user.virtiofs.trusted.overlay.opaque: errno 1 (operation not permitted)
}

func ExampleParse_error() {
	_, err := xattrmap.Parse(":prefix:all::user.virtiofs.: :bad:everywhere:::")
	fmt.Println(err)
	// Output:
	// xattrmap: rule 2 (byte 34): expected scope "client", "server" or "all", found "everywhere"
}
