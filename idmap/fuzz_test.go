package idmap

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParseTranslate parses the input as one rule and, split at newlines,
// as the values of --translate-uid. It never panics; a parsed rule's
// String() re-parses to the same rule and is its own canonical form; a
// built map agrees with the oracle and survives parse -> String -> parse;
// a refused list names a rule of the list.
func FuzzParseTranslate(f *testing.F) {
	for _, s := range []string{
		"guest:0:1000:10", "host:1000:0:1", "map:0:100000:65536", "squash-guest:0:1001:4294967295",
		"squash-host:1:2:3", "forbid-guest:0:1000", "MAP/+0/007/1", "map→0→1000→1", "map 0 1000 1",
		"map:0:4294967290:10", ":0:1:1", "map", "", "forbİd-guest:0:1",
		"squash-guest:0:1001:4294967295\nhost:1001:1000:1",
		"map:0:1000:10\nguest:5:0:10", "forbid-guest:10:10\nsquash-guest:0:0:11\nhost:5:5:5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRule(s); err == nil {
			c := r.String()
			again, err := ParseRule(c)
			if err != nil || again != r {
				t.Fatalf("ParseRule(%q) = %+v, but ParseRule(%q) = %+v, %v", s, r, c, again, err)
			}
			if again.String() != c {
				t.Fatalf("String of %+v not canonical: %q then %q", r, c, again.String())
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("parsed rule %+v does not validate: %v", r, err)
			}
		}

		values := strings.Split(s, "\n")
		m, err := ParseUIDMap(values)
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) || re.Index < 1 || re.Index > len(values) || re.Text != values[re.Index-1] ||
				re.Flag != "--translate-uid" {
				t.Fatalf("ParseUIDMap(%q): error %v does not name one of its rules", values, err)
			}
			return
		}
		if len(m.Rules()) != len(values) {
			t.Fatalf("ParseUIDMap(%q) kept %d rules", values, len(m.Rules()))
		}
		checkOracle(t, m)
		again, err := ParseUIDMap(strings.Fields(m.String()))
		if err != nil || !sameTable(m.t, again.t) {
			t.Fatalf("ParseUIDMap(%q): parse -> String -> parse gives %q, %v", values, again, err)
		}
	})
}

// FuzzParseIDMap parses the input as one --uid-map value and, split at
// newlines, as the values of --gid-map. It never panics; a parsed extent's
// String() re-parses to the same extent; a built map formats to one line
// per extent and re-parses from its String().
func FuzzParseIDMap(f *testing.F) {
	for _, s := range []string{
		":0:100000:65536:", "/0/1/2/", "-0-1-2-", "+1+2+3+", "→0→1→2→", ":+0:007:+1:", ":0:1:2", "0:1:2:",
		":", "::", "", ":4294967295:0:1:", ":0:0:4294967295:",
		":0:100000:65536:\n:65536:1000:1:", ":0:100:10:\n:5:200:10:", ":0:100:10:\n:10:105:1:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if e, err := ParseExtent(s); err == nil {
			c := e.String()
			again, err := ParseExtent(c)
			if err != nil || again != e {
				t.Fatalf("ParseExtent(%q) = %+v, but ParseExtent(%q) = %+v, %v", s, e, c, again, err)
			}
			if err := e.Validate(); err != nil {
				t.Fatalf("parsed extent %+v does not validate: %v", e, err)
			}
		}

		values := strings.Split(s, "\n")
		m, err := ParseNamespaceMap(GID, values)
		if err != nil {
			var re *RuleError
			if errors.As(err, &re) && (re.Index < 1 || re.Index > len(values) || re.Text != values[re.Index-1]) {
				t.Fatalf("ParseNamespaceMap(%q): error %v names no value of the list", values, err)
			}
			return
		}
		extents := m.Extents()
		if len(extents) != len(values) || strings.Count(m.ProcText(), "\n") != len(values) ||
			len(m.NewIDMapArgs()) != 3*len(values) {
			t.Fatalf("ParseNamespaceMap(%q): %d extents, text %q, args %q", values, len(extents), m.ProcText(), m.NewIDMapArgs())
		}
		again, err := ParseNamespaceMap(GID, strings.Fields(m.String()))
		if err != nil || !slices.Equal(again.Extents(), extents) {
			t.Fatalf("ParseNamespaceMap(%q): parse -> String -> parse gives %v, %v", values, again, err)
		}
	})
}
