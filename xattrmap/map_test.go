package xattrmap

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// toHostCase is one guest name and what ToHost should make of it: a host
// name, or an errno.
type toHostCase struct {
	guest string
	host  string
	errno syscall.Errno
}

// toGuestCase is one host name and what ToGuest should make of it: a guest
// name, or hidden when guest is "".
type toGuestCase struct {
	host, guest string
}

func checkToHost(t *testing.T, m *Map, cases []toHostCase) {
	t.Helper()
	for _, c := range cases {
		host, err := m.ToHost(c.guest)
		if c.errno != 0 {
			var errno syscall.Errno
			if !errors.As(err, &errno) || errno != c.errno {
				t.Errorf("%s: ToHost(%q) = %q, %v; want errno %v", m, c.guest, host, err, c.errno)
			}
			var de *DeniedError
			if !errors.As(err, &de) || de.Name != c.guest {
				t.Errorf("%s: ToHost(%q) error %#v, want a *DeniedError naming it", m, c.guest, err)
			}
			if h, ok := m.HostNameOf(c.guest); ok {
				t.Errorf("%s: HostNameOf(%q) = %q, true; want refused", m, c.guest, h)
			}
			if b, err := m.AppendHost([]byte("x"), c.guest); err == nil || string(b) != "x" {
				t.Errorf("%s: AppendHost(x, %q) = %q, %v; want x and an error", m, c.guest, b, err)
			}
			continue
		}
		if err != nil || host != c.host {
			t.Errorf("%s: ToHost(%q) = %q, %v; want %q", m, c.guest, host, err, c.host)
		}
		if h, ok := m.HostNameOf(c.guest); !ok || h != c.host {
			t.Errorf("%s: HostNameOf(%q) = %q, %v; want %q", m, c.guest, h, ok, c.host)
		}
		if b, err := m.AppendHost([]byte("x"), c.guest); err != nil || string(b) != "x"+c.host {
			t.Errorf("%s: AppendHost(x, %q) = %q, %v; want %q", m, c.guest, b, err, "x"+c.host)
		}
	}
}

func checkToGuest(t *testing.T, m *Map, cases []toGuestCase) {
	t.Helper()
	var list, want []byte
	for _, c := range cases {
		guest, visible := m.ToGuest(c.host)
		if visible != (c.guest != "") || guest != c.guest {
			t.Errorf("%s: ToGuest(%q) = %q, %v; want %q", m, c.host, guest, visible, c.guest)
		}
		list = append(append(list, c.host...), 0)
		if c.guest != "" {
			want = append(append(want, c.guest...), 0)
		}
	}
	// The same names as one listxattr result.
	in := string(list)
	got, err := m.FilterList(list)
	if err != nil || string(got) != string(want) {
		t.Errorf("%s: FilterList(%q) = %q, %v; want %q", m, in, got, err, want)
	}
}

// The examples of virtiofsd's doc/xattr-mapping.md (and QEMU's
// docs/tools/virtiofsd.rst "xattr-mapping").
func TestDocExample1PrefixAll(t *testing.T) {
	for _, text := range []string{":prefix:all::user.virtiofs.::bad:all:::", ":map::user.virtiofs.:"} {
		m := MustParse(text)
		checkToHost(t, m, []toHostCase{
			{guest: "user.foo", host: "user.virtiofs.user.foo"},
			{guest: "security.selinux", host: "user.virtiofs.security.selinux"},
			{guest: "trusted.overlay.opaque", host: "user.virtiofs.trusted.overlay.opaque"},
			{guest: "system.posix_acl_access", host: "user.virtiofs.system.posix_acl_access"},
			{guest: "user.virtiofs.x", host: "user.virtiofs.user.virtiofs.x"},
		})
		checkToGuest(t, m, []toGuestCase{
			{"user.virtiofs.user.foo", "user.foo"},
			{"user.bar", ""},         // the host's own: hidden
			{"security.selinux", ""}, // the host's label: hidden
			{"user.virtiofs.security.selinux", "security.selinux"},
			{"user.virtiofs.", ""}, // would be the empty name
			{"user.virtiofs.user.virtiofs.x", "user.virtiofs.x"},
		})
		if h, ok := m.SecurityCapability(); !ok || h != "user.virtiofs.security.capability" {
			t.Errorf("%s: SecurityCapability() = %q, %v", m, h, ok)
		}
		if !m.Terminated() {
			t.Errorf("%s: not Terminated", m)
		}
	}
}

func TestDocExample2PrefixTrusted(t *testing.T) {
	for _, text := range []string{
		"/prefix/all/trusted./user.virtiofs./\n/bad/server//trusted./\n/bad/client/user.virtiofs.//\n/ok/all///",
		"/map/trusted./user.virtiofs./",
	} {
		m := MustParse(text)
		checkToHost(t, m, []toHostCase{
			{guest: "trusted.overlay.opaque", host: "user.virtiofs.trusted.overlay.opaque"},
			{guest: "user.foo", host: "user.foo"},
			{guest: "security.selinux", host: "security.selinux"},
			// The target of the remapping is out of the guest's reach.
			{guest: "user.virtiofs.trusted.overlay.opaque", errno: syscall.EPERM},
			{guest: "user.virtiofs.", errno: syscall.EPERM},
		})
		checkToGuest(t, m, []toGuestCase{
			{"user.virtiofs.trusted.overlay.opaque", "trusted.overlay.opaque"},
			{"trusted.overlay.opaque", ""}, // the host's own trusted.*: hidden
			{"user.foo", "user.foo"},
			{"security.selinux", "security.selinux"},
			// Not something the guest wrote, yet listed with the prefix
			// stripped: virtiofsd's server direction ignores the key.
			{"user.virtiofs.other", "other"},
		})
		if h, ok := m.SecurityCapability(); ok {
			t.Errorf("%s: SecurityCapability() = %q, true; want not remapped", m, h)
		}
	}
}

func TestDocExample3HideSecurity(t *testing.T) {
	m := MustParse("/bad/all/security./security./\n/ok/all///")
	checkToHost(t, m, []toHostCase{
		{guest: "security.selinux", errno: syscall.EPERM},
		{guest: "security.capability", errno: syscall.EPERM},
		{guest: "user.a", host: "user.a"},
	})
	checkToGuest(t, m, []toGuestCase{
		{"security.selinux", ""},
		{"user.a", "user.a"},
		{"trusted.b", "trusted.b"},
	})
	// security.capability refused: nothing for the daemon to clear.
	if h, ok := m.SecurityCapability(); ok {
		t.Errorf("SecurityCapability() = %q, true", h)
	}
}

// TestDocRuleTable checks the single rules of the documentation's table.
func TestDocRuleTable(t *testing.T) {
	const term = " :bad:all:::"
	tests := []struct {
		rules   string
		toHost  []toHostCase
		toGuest []toGuestCase
	}{
		{":prefix:client:trusted.:user.virtiofs.:" + term,
			[]toHostCase{{guest: "trusted.a", host: "user.virtiofs.trusted.a"}, {guest: "user.a", errno: syscall.EPERM}},
			[]toGuestCase{{"user.virtiofs.trusted.a", ""}}}, // client scope only: no stripping
		{":prefix:server::user.virtiofs.:" + term,
			[]toHostCase{{guest: "trusted.a", errno: syscall.EPERM}},
			[]toGuestCase{{"user.virtiofs.trusted.a", "trusted.a"}, {"user.virtiofs.x.y", "x.y"}, {"user.a", ""}}},
		{":prefix:all:trusted.:user.virtiofs.:" + term,
			[]toHostCase{{guest: "trusted.a", host: "user.virtiofs.trusted.a"}, {guest: "user.a", errno: syscall.EPERM}},
			[]toGuestCase{{"user.virtiofs.trusted.a", "trusted.a"}, {"trusted.a", ""}}},
		{":ok:client:user.::" + term,
			[]toHostCase{{guest: "user.a", host: "user.a"}, {guest: "trusted.a", errno: syscall.EPERM}},
			[]toGuestCase{{"user.a", ""}}},
		{":ok:server::security.:" + term,
			[]toHostCase{{guest: "security.a", errno: syscall.EPERM}},
			[]toGuestCase{{"security.a", "security.a"}, {"user.a", ""}}},
		{":ok:all:::",
			[]toHostCase{{guest: "anything", host: "anything"}},
			[]toGuestCase{{"anything", "anything"}}},
		{":bad:server::security.: :ok:all:::",
			[]toHostCase{{guest: "security.a", host: "security.a"}}, // server scope: the guest may still use it
			[]toGuestCase{{"security.a", ""}, {"user.a", "user.a"}}},
		{":bad:client:security.:: :ok:all:::",
			[]toHostCase{{guest: "security.a", errno: syscall.EPERM}, {guest: "user.a", host: "user.a"}},
			[]toGuestCase{{"security.a", "security.a"}}}, // client scope: still listed
		{":unsupported:client:security.:: :ok:all:::",
			[]toHostCase{{guest: "security.selinux", errno: syscall.ENOTSUP}, {guest: "user.a", host: "user.a"}},
			[]toGuestCase{{"security.selinux", "security.selinux"}}},
		{":unsupported:all:security.:security.: :ok:all:::",
			[]toHostCase{{guest: "security.selinux", errno: syscall.ENOTSUP}},
			[]toGuestCase{{"security.selinux", ""}, {"user.a", "user.a"}}},
	}
	for _, tt := range tests {
		m := MustParse(tt.rules)
		checkToHost(t, m, tt.toHost)
		checkToGuest(t, m, tt.toGuest)
	}
}

// An SELinux-style remap: the guest's security.selinux labels are stored
// as user.virtiofs.security.selinux; the host's own label is invisible and
// untouchable from the guest; everything else passes through.
func TestSELinuxRemap(t *testing.T) {
	m := MustParse(":map:security.selinux:user.virtiofs.:")
	checkToHost(t, m, []toHostCase{
		{guest: "security.selinux", host: "user.virtiofs.security.selinux"},
		{guest: "security.selinuxx", host: "user.virtiofs.security.selinuxx"}, // byte prefix match
		{guest: "security.capability", host: "security.capability"},
		{guest: "user.virtiofs.security.selinux", errno: syscall.EPERM},
		{guest: "user.mime_type", host: "user.mime_type"},
	})
	checkToGuest(t, m, []toGuestCase{
		{"security.selinux", ""},
		{"user.virtiofs.security.selinux", "security.selinux"},
		{"security.capability", "security.capability"},
		{"user.mime_type", "user.mime_type"},
	})
	if h, ok := m.SecurityCapability(); ok {
		t.Errorf("SecurityCapability() = %q, true; want not remapped", h)
	}
}

func TestFirstMatchWins(t *testing.T) {
	m := MustParse(":prefix:all:user.a:p1.: :prefix:all:user.:p2.: :bad:all:user.a:p1.: :ok:all:::")
	checkToHost(t, m, []toHostCase{
		{guest: "user.ab", host: "p1.user.ab"},
		{guest: "user.b", host: "p2.user.b"},
		{guest: "trusted.x", host: "trusted.x"},
	})
	checkToGuest(t, m, []toGuestCase{
		{"p1.user.ab", "user.ab"},
		{"p2.user.b", "user.b"},
		{"p1.", ""},
	})
}

func TestImplicitDefault(t *testing.T) {
	m := MustParse(":prefix:client:trusted.:user.virtiofs.:")
	if m.Terminated() {
		t.Error("Terminated() = true for a map without catch-all")
	}
	checkToHost(t, m, []toHostCase{
		{guest: "trusted.a", host: "user.virtiofs.trusted.a"},
		{guest: "user.a", errno: syscall.EPERM},
	})
	checkToGuest(t, m, []toGuestCase{{"user.virtiofs.trusted.a", ""}, {"user.a", ""}})
	_, err := m.ToHost("user.a")
	var de *DeniedError
	if !errors.As(err, &de) || de.Index != -1 || de.Rule != (Rule{TypeBad, ScopeAll, "", ""}) {
		t.Fatalf("ToHost(user.a) error %#v, want the implicit default", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"user.a" matches no rule (implicit :bad:all:::)`) ||
		!strings.Contains(msg, "operation not permitted") {
		t.Errorf("error message %q", msg)
	}

	// Terminated in one direction only.
	for _, text := range []string{":ok:client:::", ":ok:server:::", ":ok:all:a:b: :ok:server:::"} {
		if MustParse(text).Terminated() {
			t.Errorf("%s: Terminated() = true", text)
		}
	}
	for _, text := range []string{":ok:all:::", ":ok:client::x: :bad:server:y::", ":map:a:b:"} {
		if !MustParse(text).Terminated() {
			t.Errorf("%s: Terminated() = false", text)
		}
	}
}

func TestDeniedError(t *testing.T) {
	m := MustParse(":ok:all:user.:: :unsupported:client:security.:: :bad:all:::")
	_, err := m.ToHost("security.selinux")
	if !errors.Is(err, syscall.ENOTSUP) {
		t.Fatalf("error %v is not ENOTSUP", err)
	}
	want := `xattrmap: guest attribute "security.selinux" refused by rule 2 :unsupported:client:security.::: operation not supported`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	var de *DeniedError
	if !errors.As(err, &de) || de.Index != 1 || de.Rule.Type != TypeUnsupported {
		t.Errorf("error %#v", err)
	}
	_, err = m.ToHost("trusted.a")
	if !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "rule 3 :bad:all:::") {
		t.Errorf("ToHost(trusted.a) error %v", err)
	}
}

func TestSecurityCapability(t *testing.T) {
	tests := []struct {
		rules    string
		host     string
		remapped bool
	}{
		{":map::user.virtiofs.:", "user.virtiofs.security.capability", true},
		{":map:security.:user.virtiofs.:", "user.virtiofs.security.capability", true},
		{":prefix:client:security.capability:trusted.:", "trusted.security.capability", true},
		{":ok:all:::", "", false},
		{":map:trusted.:user.virtiofs.:", "", false},
		{":bad:all:security.:: :ok:all:::", "", false},
		{":unsupported:client:security.capability:: :ok:all:::", "", false},
		{":prefix:client:security.capability::", "", false}, // empty prepend: maps to itself
		{":ok:client:user.::", "", false},                   // implicit default refuses it
	}
	for _, tt := range tests {
		m := MustParse(tt.rules)
		if h, ok := m.SecurityCapability(); h != tt.host || ok != tt.remapped {
			t.Errorf("%s: SecurityCapability() = %q, %v; want %q, %v", tt.rules, h, ok, tt.host, tt.remapped)
		}
	}
}

func TestNilMap(t *testing.T) {
	var m *Map
	if h, err := m.ToHost("security.selinux"); h != "security.selinux" || err != nil {
		t.Errorf("ToHost = %q, %v", h, err)
	}
	if b, err := m.AppendHost(nil, "a"); string(b) != "a" || err != nil {
		t.Errorf("AppendHost = %q, %v", b, err)
	}
	if h, ok := m.HostNameOf("a"); h != "a" || !ok {
		t.Errorf("HostNameOf = %q, %v", h, ok)
	}
	if g, ok := m.ToGuest("a"); g != "a" || !ok {
		t.Errorf("ToGuest = %q, %v", g, ok)
	}
	if l, err := m.FilterList([]byte("a\x00b\x00")); string(l) != "a\x00b\x00" || err != nil {
		t.Errorf("FilterList = %q, %v", l, err)
	}
	if _, ok := m.SecurityCapability(); ok {
		t.Error("SecurityCapability remapped")
	}
	if m.Rules() != nil || !m.Terminated() {
		t.Error("Rules or Terminated")
	}
}

func TestFilterList(t *testing.T) {
	m := MustParse(":map::user.virtiofs.:")
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"\x00", ""},
		{"user.virtiofs.a\x00", "a\x00"},
		{"\x00\x00user.virtiofs.a\x00\x00user.virtiofs.b\x00", "a\x00b\x00"},
		{"security.selinux\x00", ""},
		{"user.virtiofs.\x00user.virtiofs.c\x00", "c\x00"},
		{"user.virtiofs.security.selinux\x00security.selinux\x00user.virtiofs.user.x\x00", "security.selinux\x00user.x\x00"},
	}
	for _, tt := range tests {
		buf := []byte(tt.in)
		got, err := m.FilterList(buf)
		if err != nil || string(got) != tt.want {
			t.Errorf("FilterList(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if len(got) > 0 && &got[0] != &buf[0] {
			t.Errorf("FilterList(%q) did not work in place", tt.in)
		}
	}

	for _, in := range []string{"a", "user.virtiofs.a\x00user.virtiofs.b", "a\x00\x00b"} {
		buf := []byte(in)
		_, err := m.FilterList(buf)
		if err == nil || !strings.Contains(err.Error(), "lacks a NUL terminator") {
			t.Errorf("FilterList(%q) error %v, want a missing terminator", in, err)
		}
		if string(buf) != in {
			t.Errorf("FilterList(%q) changed a malformed list to %q", in, buf)
		}
	}
	_, err := m.FilterList([]byte("user.virtiofs.a\x00user.virtiofs.b"))
	if want := `name at byte 16 ("user.virtiofs.b") lacks`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
	var nilMap *Map
	if _, err := nilMap.FilterList([]byte("a")); err == nil {
		t.Error("nil map accepted an unterminated list")
	}
}

func TestNoAllocations(t *testing.T) {
	m := MustParse(":map:trusted.:user.virtiofs.:")
	list := []byte("user.a\x00security.selinux\x00user.virtiofs.trusted.b\x00trusted.c\x00")
	work := make([]byte, len(list))
	buf := make([]byte, 0, 64)
	var sink string
	for name, f := range map[string]func(){
		"ToHost unchanged": func() { sink, _ = m.ToHost("user.foo") },
		"HostNameOf":       func() { sink, _ = m.HostNameOf("security.capability") },
		"AppendHost prefixed": func() {
			b, _ := m.AppendHost(buf[:0], "trusted.overlay.opaque")
			sink = string(b[:0])
		},
		"ToGuest stripped": func() { sink, _ = m.ToGuest("user.virtiofs.trusted.b") },
		"FilterList": func() {
			copy(work, list)
			out, _ := m.FilterList(work)
			sink = string(out[:0])
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
	_ = sink
}
