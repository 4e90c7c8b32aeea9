package idmap

import (
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	valid := []struct {
		in   string
		want Rule
	}{
		{"guest:0:1000:10", Rule{RuleGuest, 0, 1000, 10}},
		{"host:1000:0:1", Rule{RuleHost, 1000, 0, 1}},
		{"map:0:100000:65536", Rule{RuleMap, 0, 100000, 65536}},
		{"squash-guest:0:1001:4294967295", Rule{RuleSquashGuest, 0, 1001, 4294967295}}, // virtiofsd's README example
		{"squash-host:1:2:3", Rule{RuleSquashHost, 1, 2, 3}},
		{"forbid-guest:0:1000", Rule{RuleForbidGuest, 0, 0, 1000}},
		// The type is matched without regard to case.
		{"MAP:1:2:3", Rule{RuleMap, 1, 2, 3}},
		{"Squash-Guest:1:2:3", Rule{RuleSquashGuest, 1, 2, 3}},
		{"FORBID-GUEST:7:1", Rule{RuleForbidGuest, 7, 0, 1}},
		// Any character but a letter, digit, '-' or '_' separates.
		{"map/0/1000/1", Rule{RuleMap, 0, 1000, 1}},
		{"map 0 1000 1", Rule{RuleMap, 0, 1000, 1}},
		{"map,0,1000,1", Rule{RuleMap, 0, 1000, 1}},
		{"map.0.1000.1", Rule{RuleMap, 0, 1000, 1}},
		{"map→0→1000→1", Rule{RuleMap, 0, 1000, 1}},
		{"forbid-guest=5=6", Rule{RuleForbidGuest, 5, 0, 6}},
		// Numbers as Rust's u32 parser takes them.
		{"map:+5:007:1", Rule{RuleMap, 5, 7, 1}},
		{"map:0:0:+0004294967295", Rule{RuleMap, 0, 0, 4294967295}},
		// Boundaries: ranges may end at MaxID.
		{"guest:4294967294:0:1", Rule{RuleGuest, 4294967294, 0, 1}},
		{"guest:0:4294967294:1", Rule{RuleGuest, 0, 4294967294, 1}},
		{"host:4294967290:4294967290:5", Rule{RuleHost, 4294967290, 4294967290, 5}},
		{"squash-guest:5:4294967294:1", Rule{RuleSquashGuest, 5, 4294967294, 1}},
		{"squash-host:0:0:4294967295", Rule{RuleSquashHost, 0, 0, 4294967295}},
		{"forbid-guest:1:4294967294", Rule{RuleForbidGuest, 1, 0, 4294967294}},
	}
	for _, tc := range valid {
		got, err := ParseRule(tc.in)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseRule(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if again, err := ParseRule(got.String()); err != nil || again != got {
			t.Errorf("ParseRule(%q) = %+v, %v: String() does not round-trip", got.String(), again, err)
		}
	}

	invalid := []struct {
		in   string
		want []string // substrings of the error
	}{
		{"", []string{"empty rule", "TYPE:FROM:TO:COUNT"}},
		{"map", []string{`no separator after the type "map"`}},
		{"squash-guest", []string{"no separator"}},
		{":0:1000:1", []string{"missing the type before the first ':'", "map:GUEST:HOST:COUNT"}},
		{"foo:1:2:3", []string{`unknown type "foo"`, "guest, host, map, squash-guest, squash-host or forbid-guest"}},
		{"squash_guest:1:2:3", []string{`unknown type "squash_guest"`}},
		{"map_x:1:2:3", []string{`unknown type "map_x"`}},
		{"forbİd-guest:0:1", []string{`unknown type "forbİd-guest"`}},
		{"forbid:0:1", []string{`unknown type "forbid"`}},
		{"map:0:1000", []string{"map takes 3 numbers separated by ':'", "map:GUEST:HOST:COUNT", "got 2 field(s)"}},
		{"map:", []string{"got 1 field(s)"}},
		{"map:0:1000:1:", []string{"got 4 field(s)"}},
		{"map:0/1000/1", []string{"got 1 field(s)"}},
		{"map:0:1000/1", []string{"got 2 field(s)"}},
		{"forbid-guest:0:1:2", []string{"forbid-guest takes 2 numbers", "forbid-guest:GUEST:COUNT", "got 3 field(s)"}},
		{"guest:0:1000", []string{"guest takes 3 numbers", "guest:GUEST:HOST:COUNT"}},
		{"host:0:1", []string{"host takes 3 numbers", "host:HOST:GUEST:COUNT"}},
		{"map:0::1", []string{`HOST "": want a decimal number`}},
		{"map:-1:0:1", []string{`GUEST "-1": want a decimal number`}},
		{"squash-host:x:0:1", []string{`HOST "x": want a decimal number`}},
		{"squash-host:1:y:1", []string{`GUEST "y": want a decimal number`}},
		{"map:0:0x10:1", []string{`HOST "0x10": want a decimal number`}},
		{"map:++1:0:1", []string{`GUEST "++1"`}},
		{"map:+:0:1", []string{`GUEST "+"`}},
		{"map: 1:0:1", []string{`GUEST " 1"`}},
		{"map:1_000:0:1", []string{`GUEST "1_000"`}},
		{"map:0:1000:4294967296", []string{`COUNT "4294967296": larger than 4294967295`}},
		{"forbid-guest:99999999999:1", []string{`GUEST "99999999999": larger than 4294967295`}},
		{"map:0:1000:0", []string{"COUNT is 0"}},
		{"forbid-guest:5:0", []string{"COUNT is 0"}},
		{"guest:4294967295:0:1", []string{"source range 4294967295+1 ends at 4294967295, past 4294967294"}},
		{"guest:1:0:4294967295", []string{"source range 1+4294967295 ends at 4294967295"}},
		{"forbid-guest:4294967295:1", []string{"source range"}},
		{"squash-host:4294967200:0:100", []string{"source range 4294967200+100 ends at 4294967299"}},
		{"guest:0:4294967290:10", []string{"target range 4294967290+10 ends at 4294967299"}},
		{"host:0:4294967295:1", []string{"target range"}},
		{"map:0:4294967290:10", []string{"target range"}},
		{"squash-guest:0:4294967295:1", []string{"target id 4294967295 is (uid_t)-1"}},
		{"squash-host:0:4294967295:1", []string{"(uid_t)-1"}},
		{"map\xff:0:1:1", []string{"not valid UTF-8"}},
	}
	for _, tc := range invalid {
		r, err := ParseRule(tc.in)
		if err == nil {
			t.Errorf("ParseRule(%q) = %+v, want an error", tc.in, r)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseRule(%q) error %q does not contain %q", tc.in, err, w)
			}
		}
	}
}

func TestRuleString(t *testing.T) {
	for _, tc := range []struct {
		r    Rule
		want string
	}{
		{Rule{RuleGuest, 1, 2, 3}, "guest:1:2:3"},
		{Rule{RuleHost, 1, 2, 3}, "host:1:2:3"},
		{Rule{RuleMap, 0, 100000, 65536}, "map:0:100000:65536"},
		{Rule{RuleSquashGuest, 0, 1001, 4294967295}, "squash-guest:0:1001:4294967295"},
		{Rule{RuleSquashHost, 1, 2, 3}, "squash-host:1:2:3"},
		{Rule{RuleForbidGuest, 0, 0, 1000}, "forbid-guest:0:1000"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.r, got, tc.want)
		}
	}
	if got := RuleType(0).String(); got != "RuleType(0)" {
		t.Errorf("RuleType(0).String() = %q", got)
	}
}

func TestRuleValidate(t *testing.T) {
	for _, tc := range []struct {
		r    Rule
		want string
	}{
		{Rule{Type: 0, Count: 1}, "unknown rule type 0"},
		{Rule{Type: 42, Count: 1}, "unknown rule type 42"},
		{Rule{Type: RuleForbidGuest, From: 1, To: 5, Count: 1}, "forbid-guest takes no target id, but To is 5"},
		{Rule{Type: RuleMap, From: 1, To: 5}, "COUNT is 0"},
	} {
		err := tc.r.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v.Validate() = %v, want an error containing %q", tc.r, err, tc.want)
		}
	}
}
