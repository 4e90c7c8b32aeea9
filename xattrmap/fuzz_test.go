package xattrmap

import (
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"
)

var fuzzSeeds = []string{
	":prefix:all::user.virtiofs.::bad:all:::",
	":map::user.virtiofs.:",
	":map:trusted.:user.virtiofs.:",
	"/prefix/all/trusted./user.virtiofs./\n/bad/server//trusted./\n/bad/client/user.virtiofs.//\n/ok/all///",
	"/bad/all/security./security./ /ok/all///",
	":unsupported:client:security.:: :ok:all:::",
	":prefix:client:trusted.:user.virtiofs.:",
	"§ok§all§§§ xokxallxxx",
	"\xffbad\xffclient\xffa\xc3\xff\xff",
	":ok:all:::x",
	":map:a:b: :ok:all:::",
	"",
}

// FuzzParse checks that Parse never panics, that its errors are
// well-formed, and that String re-parses to the same rules.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %T %v", s, err, err)
			}
			if pe.Offset < 0 || pe.Offset > len(s) || pe.Rule < 1 || pe.Expected == "" || pe.Found == "" {
				t.Fatalf("Parse(%q) malformed error %#v", s, pe)
			}
			return
		}
		rules := m.Rules()
		if len(rules) == 0 {
			t.Fatalf("Parse(%q) succeeded with no rules", s)
		}
		text := m.String()
		m2, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, text, err)
		}
		if !slices.Equal(m2.Rules(), rules) {
			t.Fatalf("Parse(%q): String() %q parses to %v, want %v", s, text, m2.Rules(), rules)
		}
		if m2.String() != text {
			t.Fatalf("String() not stable: %q, then %q", text, m2.String())
		}
		for _, r := range rules {
			if r1, err := Parse(r.String()); err != nil || !slices.Equal(r1.Rules(), []Rule{r}) {
				t.Fatalf("rule %#v: String() %q parses to %v, %v", r, r.String(), r1, err)
			}
		}
	})
}

// refToHost is ToHost spelled out from the package documentation, over
// the rules as written plus the implicit default.
func refToHost(rules []Rule, guest string) (string, syscall.Errno) {
	for _, r := range slices.Concat(rules, []Rule{{TypeBad, ScopeAll, "", ""}}) {
		if r.Scope&ScopeClient == 0 || !strings.HasPrefix(guest, r.Key) {
			continue
		}
		switch r.Type {
		case TypePrefix:
			return r.Prepend + guest, 0
		case TypeOK:
			return guest, 0
		case TypeBad:
			return "", syscall.EPERM
		default:
			return "", syscall.ENOTSUP
		}
	}
	panic("unreachable")
}

// refToGuest is the reference for ToGuest.
func refToGuest(rules []Rule, host string) (string, bool) {
	for _, r := range slices.Concat(rules, []Rule{{TypeBad, ScopeAll, "", ""}}) {
		if r.Scope&ScopeServer == 0 || !strings.HasPrefix(host, r.Prepend) {
			continue
		}
		switch r.Type {
		case TypePrefix:
			g := strings.TrimPrefix(host, r.Prepend)
			return g, g != ""
		case TypeOK:
			return host, true
		default:
			return "", false
		}
	}
	panic("unreachable")
}

// FuzzApply runs names through parsed maps, comparing with the reference
// above, and through maps made by the map sugar, where the directions are
// inverse.
func FuzzApply(f *testing.F) {
	names := []string{"user.foo", "security.capability", "trusted.overlay.opaque", "user.virtiofs.user.foo", "user.virtiofs.", "a"}
	for i, s := range fuzzSeeds {
		f.Add(s, "trusted.", "user.virtiofs.", names[i%len(names)], []byte("user.virtiofs.a\x00b\x00\x00security.selinux\x00"))
	}
	f.Add(":ok:all:::", "", "", "", []byte(nil))
	f.Add(":map:a:b:", "", "user.virtiofs.", "user.foo", []byte("user.virtiofs.\x00user.virtiofs.user.foo\x00"))
	f.Fuzz(func(t *testing.T, text, key, prepend, name string, list []byte) {
		if m, err := Parse(text); err == nil {
			checkAgainstReference(t, m, name, list)
		}

		if strings.IndexByte(key, 0) >= 0 || strings.IndexByte(prepend, 0) >= 0 {
			return
		}
		m, err := New(MapRules(key, prepend)...)
		if err != nil {
			t.Fatalf("New(MapRules(%q, %q)): %v", key, prepend, err)
		}
		checkAgainstReference(t, m, name, list)
		if sm, err := Parse(m.String()); err != nil || !slices.Equal(sm.Rules(), m.Rules()) {
			t.Fatalf("%q: String does not round-trip: %v", m, err)
		}
		if name == "" {
			return // no guest can use the empty name
		}
		// A name the guest may use lists back as itself.
		if host, err := m.ToHost(name); err == nil {
			if g, ok := m.ToGuest(host); !ok || g != name {
				t.Fatalf("%s: ToHost(%q) = %q, which lists as %q, %v", m, name, host, g, ok)
			}
		}
		// A listed name the guest uses reaches the host name it came from,
		// unless it was stripped of prepend without carrying key (the
		// server direction does not look at the key).
		host := name
		if g, ok := m.ToGuest(host); ok && (strings.HasPrefix(g, key) || !strings.HasPrefix(host, prepend)) {
			if h, err := m.ToHost(g); err != nil || h != host {
				t.Fatalf("%s: %q lists as %q, which maps to %q, %v", m, host, g, h, err)
			}
		}
	})
}

func checkAgainstReference(t *testing.T, m *Map, name string, list []byte) {
	t.Helper()
	rules := m.Rules()
	wantHost, wantErrno := refToHost(rules, name)
	host, err := m.ToHost(name)
	if wantErrno != 0 {
		if !errors.Is(err, wantErrno) {
			t.Fatalf("%s: ToHost(%q) = %q, %v; want %v", m, name, host, err, wantErrno)
		}
	} else if err != nil || host != wantHost {
		t.Fatalf("%s: ToHost(%q) = %q, %v; want %q", m, name, host, err, wantHost)
	}
	if h, ok := m.HostNameOf(name); ok != (wantErrno == 0) || h != wantHost {
		t.Fatalf("%s: HostNameOf(%q) = %q, %v", m, name, h, ok)
	}
	if b, err := m.AppendHost([]byte("<"), name); (err == nil) != (wantErrno == 0) || string(b) != "<"+wantHost {
		t.Fatalf("%s: AppendHost(<, %q) = %q, %v", m, name, b, err)
	}
	g, ok := m.ToGuest(name)
	if wg, wok := refToGuest(rules, name); g != wg || ok != wok {
		t.Fatalf("%s: ToGuest(%q) = %q, %v; want %q, %v", m, name, g, ok, wg, wok)
	}
	sc, remapped := m.SecurityCapability()
	if h, ok := m.HostNameOf("security.capability"); remapped != (ok && h != "security.capability") || (remapped && sc != h) {
		t.Fatalf("%s: SecurityCapability() = %q, %v but HostNameOf gives %q, %v", m, sc, remapped, h, ok)
	}

	in := slices.Clone(list)
	got, err := m.FilterList(in)
	if len(list) > 0 && list[len(list)-1] != 0 {
		if err == nil || !slices.Equal(in, list) {
			t.Fatalf("%s: FilterList(%q) = %q, %v; want an error and no change", m, list, got, err)
		}
		return
	}
	var want []byte
	for n := range strings.SplitSeq(strings.TrimSuffix(string(list), "\x00"), "\x00") {
		if g, ok := refToGuest(rules, n); n != "" && ok {
			want = append(append(want, g...), 0)
		}
	}
	if err != nil || string(got) != string(want) {
		t.Fatalf("%s: FilterList(%q) = %q, %v; want %q", m, list, got, err, want)
	}
}
