package xattrmap

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	trustedMap := []Rule{
		{TypePrefix, ScopeAll, "trusted.", "user.virtiofs."},
		{TypeBad, ScopeServer, "", "trusted."},
		{TypeBad, ScopeClient, "user.virtiofs.", ""},
		{TypeOK, ScopeAll, "", ""},
	}
	tests := []struct {
		name string
		in   string
		want []Rule
	}{
		{"single rule", ":prefix:client:trusted.:user.virtiofs.:",
			[]Rule{{TypePrefix, ScopeClient, "trusted.", "user.virtiofs."}}},
		{"doc example 1, concatenated", ":prefix:all::user.virtiofs.::bad:all:::",
			[]Rule{{TypePrefix, ScopeAll, "", "user.virtiofs."}, {TypeBad, ScopeAll, "", ""}}},
		{"doc example 2, slashes and newlines", `/prefix/all/trusted./user.virtiofs./
            /bad/server//trusted./
            /bad/client/user.virtiofs.//
            /ok/all///`, trustedMap},
		{"doc example 3", "/bad/all/security./security./\n/ok/all///",
			[]Rule{{TypeBad, ScopeAll, "security.", "security."}, {TypeOK, ScopeAll, "", ""}}},
		{"map, empty key", ":map::user.virtiofs.:",
			[]Rule{{TypePrefix, ScopeAll, "", "user.virtiofs."}, {TypeBad, ScopeAll, "", ""}}},
		{"map with key", ":map:trusted.:user.virtiofs.:", trustedMap},
		{"map with other separator and surrounding space", " \t\n/map/trusted./user.virtiofs./ \r\n", trustedMap},
		{"rules before map", ":bad:all:security.capability::/map/trusted./user.virtiofs./",
			append([]Rule{{TypeBad, ScopeAll, "security.capability", ""}}, trustedMap...)},
		{"different separators per rule", ":prefix:all:trusted.:user.virtiofs.: /prefix/all/trusted./user.virtiofs./",
			[]Rule{{TypePrefix, ScopeAll, "trusted.", "user.virtiofs."}, {TypePrefix, ScopeAll, "trusted.", "user.virtiofs."}}},
		{"all types and scopes", ":prefix:client:a:b: :ok:server:c:d: :bad:all:e:f: :unsupported:client:g:h:",
			[]Rule{{TypePrefix, ScopeClient, "a", "b"}, {TypeOK, ScopeServer, "c", "d"}, {TypeBad, ScopeAll, "e", "f"},
				{TypeUnsupported, ScopeClient, "g", "h"}}},
		{"separator inside other rule's fields", "/prefix/all/a:b/c:d/ :ok:all:/:/:",
			[]Rule{{TypePrefix, ScopeAll, "a:b", "c:d"}, {TypeOK, ScopeAll, "/", "/"}}},
		{"key and prepend keep white space", ":ok:all: a : b\t:",
			[]Rule{{TypeOK, ScopeAll, " a ", " b\t"}}},
		{"multi-byte separator", "§ok§all§user.§§",
			[]Rule{{TypeOK, ScopeAll, "user.", ""}}},
		{"letter separator", "xokxallxxx", []Rule{{TypeOK, ScopeAll, "", ""}}},
		{"invalid UTF-8 byte separator", "\xffbad\xffclient\xffa\xc3\xff\xff",
			[]Rule{{TypeBad, ScopeClient, "a\xc3", ""}}},
		{"non-ASCII names", ":prefix:all:ü.:ß.:", []Rule{{TypePrefix, ScopeAll, "ü.", "ß."}}},
		{"vertical tab and form feed between rules", ":ok:client:::\v\f:bad:server:::",
			[]Rule{{TypeOK, ScopeClient, "", ""}, {TypeBad, ScopeServer, "", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := m.Rules(); !slices.Equal(got, tt.want) {
				t.Fatalf("Parse(%q) rules\n got %v\nwant %v", tt.in, got, tt.want)
			}
			checkRoundTrip(t, m)
		})
	}
}

// checkRoundTrip checks that m's String parses back to the same rules and
// is stable, and that New gives the same map.
func checkRoundTrip(t *testing.T, m *Map) {
	t.Helper()
	text := m.String()
	m2, err := Parse(text)
	if err != nil {
		t.Fatalf("String() = %q does not parse: %v", text, err)
	}
	if !slices.Equal(m2.Rules(), m.Rules()) {
		t.Fatalf("String() = %q parses to\n %v\nwant %v", text, m2.Rules(), m.Rules())
	}
	if m2.String() != text {
		t.Fatalf("String() not stable: %q then %q", text, m2.String())
	}
	m3, err := New(m.Rules()...)
	if err != nil {
		t.Fatalf("New(Rules()): %v", err)
	}
	if m3.String() != text {
		t.Fatalf("New(Rules()).String() = %q, want %q", m3.String(), text)
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		in     string
		offset int
		rule   int
		want   string // substring of the error message
	}{
		{"", 0, 1, "expected a rule, found end of input"},
		{" \n\t ", 4, 1, "expected a rule"},
		{":prefix:client:hi", 17, 1, `expected ":" ending the key field, found end of input`},
		{":TOMATOPIRATE:trusted.:virtiofs.user.:", 1, 1, `expected type "prefix", "ok", "bad", "unsupported" or "map", found "TOMATOPIRATE"`},
		{"/prefix/helloworld///", 8, 1, `expected scope "client", "server" or "all", found "helloworld"`},
		{":ok", 3, 1, `expected ":" ending the type field`},
		{":bogus", 1, 1, `found "bogus"`},
		{":ok:all", 7, 1, `expected ":" ending the scope field`},
		{":ok:al:::", 4, 1, `found "al"`},
		{":ok:all:a", 9, 1, "ending the key field"},
		{":ok:all:a:b", 11, 1, "ending the prepend field"},
		{":OK:all:::", 1, 1, `found "OK"`},
		{":ok:ALL:::", 4, 1, `found "ALL"`},
		{": ok:all:::", 1, 1, `found " ok"`},
		{":ok :all:::", 1, 1, `found "ok "`},
		{":ok:all::: :bogus:all:::", 12, 2, `found "bogus"`},
		{":ok:all:::x", 11, 2, `expected type`},
		{":ok:all:::\n\n/ok/all//", 21, 2, `expected "/" ending the prepend field`},
		{":ok:all:a\x00b::", 9, 1, "expected key text, found a NUL byte"},
		{":ok:all::\x00:", 9, 1, "expected prepend text, found a NUL byte"},
		{"\x00ok\x00all\x00\x00\x00", 0, 1, "expected a separator character starting a rule, found a NUL byte"},
		{":map:a", 6, 1, "ending the key field"},
		{":map:a:b", 8, 1, "ending the prepend field"},
		{":map:a:b: :ok:all:::", 10, 1, "expected end of input after the map rule (it must be the last rule)"},
		{":map:trusted.:virtiofs.user.::map:trusted.:virtiofs.user.:", 29, 1, "it must be the last rule"},
		{":ok:all::: :map:a:b:x", 20, 2, "must be the last rule"},
		{":map:all:::", 10, 1, "must be the last rule"},
		{":prefix:all:" + strings.Repeat("k", 100), 112, 1, "ending the key field"},
		{":" + strings.Repeat("t", 100) + ":all:::", 1, 1, `found "tttttttttttttttttttttttttttttttt"...`},
	}
	for _, tt := range tests {
		m, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = %q, want error", tt.in, m)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) error %T %v, want *ParseError", tt.in, err, err)
			continue
		}
		if pe.Offset != tt.offset || pe.Rule != tt.rule {
			t.Errorf("Parse(%q) error at rule %d byte %d, want rule %d byte %d (%v)", tt.in, pe.Rule, pe.Offset, tt.rule, tt.offset, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error %q, want it to contain %q", tt.in, err, tt.want)
		}
		if !strings.HasPrefix(err.Error(), "xattrmap: rule ") {
			t.Errorf("Parse(%q) error %q lacks context", tt.in, err)
		}
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustParse of a bad rule did not panic")
		}
	}()
	MustParse(":nope:")
}

func TestNew(t *testing.T) {
	if _, err := New(); err == nil {
		t.Error("New() with no rules succeeded")
	}
	bad := []Rule{
		{Type: 0, Scope: ScopeAll},
		{Type: 9, Scope: ScopeAll},
		{Type: TypeOK, Scope: 0},
		{Type: TypeOK, Scope: 4},
		{Type: TypeOK, Scope: ScopeAll, Key: "a\x00"},
		{Type: TypeOK, Scope: ScopeAll, Prepend: "\x00"},
	}
	for _, r := range bad {
		_, err := New(Rule{Type: TypeOK, Scope: ScopeClient}, r)
		if err == nil || !strings.Contains(err.Error(), "xattrmap: rule 2: ") {
			t.Errorf("New(ok, %#v) error %v, want one about rule 2", r, err)
		}
	}
	rules := []Rule{{TypePrefix, ScopeAll, "", "p."}}
	m, err := New(rules...)
	if err != nil {
		t.Fatal(err)
	}
	rules[0].Prepend = "changed."
	if h, _ := m.ToHost("x"); h != "p.x" {
		t.Errorf("New kept the caller's slice: ToHost(x) = %q", h)
	}
	m.Rules()[0].Prepend = "changed."
	if h, _ := m.ToHost("x"); h != "p.x" {
		t.Errorf("Rules returned the map's own slice: ToHost(x) = %q", h)
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{":prefix:all::user.virtiofs.::bad:all:::", ":prefix:all::user.virtiofs.: :bad:all:::"},
		{":map::user.virtiofs.:", ":prefix:all::user.virtiofs.: :bad:all:::"},
		{"/map/trusted./user.virtiofs./",
			":prefix:all:trusted.:user.virtiofs.: :bad:server::trusted.: :bad:client:user.virtiofs.:: :ok:all:::"},
		{"/prefix/all/a:b/c/", "/prefix/all/a:b/c/"},
		{"§ok§client§:/|§x§", ",ok,client,:/|,x,"},
		{"§unsupported§server§§a§", ":unsupported:server::a:"},
	}
	for _, tt := range tests {
		if got := MustParse(tt.in).String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Example 2 written out and its map sugar are the same map.
	long := MustParse("/prefix/all/trusted./user.virtiofs./ /bad/server//trusted./ /bad/client/user.virtiofs.// /ok/all///")
	if short := MustParse(":map:trusted.:user.virtiofs.:"); long.String() != short.String() {
		t.Errorf("example 2 %q and its map form %q differ", long, short)
	}
	var nilMap *Map
	if nilMap.String() != "" {
		t.Errorf("nil Map String() = %q", nilMap.String())
	}
}

func TestSeparatorFallback(t *testing.T) {
	// Every ASCII candidate used: the separator must come from elsewhere.
	all := sepCandidates + "\xc4" // a stray lead byte, as in U+0100's encoding
	r := Rule{TypePrefix, ScopeAll, all, all + "\x80"}
	text := r.String()
	m, err := Parse(text)
	if err != nil {
		t.Fatalf("%q: %v", text, err)
	}
	if got := m.Rules(); len(got) != 1 || got[0] != r {
		t.Fatalf("%q parses to %v, want %v", text, got, r)
	}
	if strings.HasPrefix(text, "\u0100") {
		t.Errorf("separator U+0100 chosen although its encoding %q occurs in the fields", "\u0100")
	}
}

func TestTypeScopeString(t *testing.T) {
	for _, tt := range []struct {
		s    interface{ String() string }
		want string
	}{
		{TypePrefix, "prefix"}, {TypeOK, "ok"}, {TypeBad, "bad"}, {TypeUnsupported, "unsupported"},
		{Type(0), "Type(0)"}, {Type(7), "Type(7)"},
		{ScopeClient, "client"}, {ScopeServer, "server"}, {ScopeAll, "all"}, {Scope(0), "Scope(0)"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
