package xattrmap

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Type is what a rule does with the names it matches.
type Type uint8

// The rule types. The zero Type is invalid.
const (
	// TypePrefix adds prepend to guest names matching key, and strips
	// prepend from host names carrying it.
	TypePrefix Type = iota + 1
	// TypeOK passes matching names through unchanged.
	TypeOK
	// TypeBad refuses matching guest names with EPERM and hides matching
	// host names.
	TypeBad
	// TypeUnsupported refuses matching guest names with ENOTSUP and hides
	// matching host names.
	TypeUnsupported
)

var typeNames = [...]string{TypePrefix: "prefix", TypeOK: "ok", TypeBad: "bad", TypeUnsupported: "unsupported"}

// String returns the rule-language spelling of t ("prefix", "ok", "bad",
// "unsupported").
func (t Type) String() string {
	if t.valid() {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

func (t Type) valid() bool { return t >= TypePrefix && t <= TypeUnsupported }

// Scope is the set of directions a rule takes part in.
type Scope uint8

// The rule scopes. The zero Scope is invalid.
const (
	// ScopeClient: the rule applies to guest names (getxattr, setxattr,
	// removexattr), matched against its key.
	ScopeClient Scope = 1 << iota
	// ScopeServer: the rule applies to host names (listxattr), matched
	// against its prepend.
	ScopeServer
	// ScopeAll: both.
	ScopeAll = ScopeClient | ScopeServer
)

// String returns the rule-language spelling of s ("client", "server",
// "all").
func (s Scope) String() string {
	switch s {
	case ScopeClient:
		return "client"
	case ScopeServer:
		return "server"
	case ScopeAll:
		return "all"
	}
	return fmt.Sprintf("Scope(%d)", uint8(s))
}

// Rule is one compiled rule, ":type:scope:key:prepend:". The map sugar is
// not a Rule: it is expanded into several (see [MapRules]).
type Rule struct {
	Type  Type
	Scope Scope
	// Key is matched as a prefix of guest names (client direction).
	Key string
	// Prepend is matched as a prefix of host names (server direction),
	// and is what a prefix rule adds to guest names.
	Prepend string
}

// MapRules returns the rules that ":map:key:prepend:" expands to.
func MapRules(key, prepend string) []Rule {
	if key == "" {
		return []Rule{
			{TypePrefix, ScopeAll, "", prepend},
			{TypeBad, ScopeAll, "", ""},
		}
	}
	return []Rule{
		{TypePrefix, ScopeAll, key, prepend},
		{TypeBad, ScopeServer, "", key},
		{TypeBad, ScopeClient, prepend, ""},
		{TypeOK, ScopeAll, "", ""},
	}
}

// validate reports what is wrong with r, if anything.
func (r Rule) validate() error {
	switch {
	case !r.Type.valid():
		return fmt.Errorf("invalid rule type %d", uint8(r.Type))
	case r.Scope != ScopeClient && r.Scope != ScopeServer && r.Scope != ScopeAll:
		return fmt.Errorf("invalid rule scope %d", uint8(r.Scope))
	case strings.IndexByte(r.Key, 0) >= 0:
		return fmt.Errorf("key %q contains a NUL byte", r.Key)
	case strings.IndexByte(r.Prepend, 0) >= 0:
		return fmt.Errorf("prepend %q contains a NUL byte", r.Prepend)
	}
	return nil
}

// String returns r in the rule language. The separator is ':' unless the
// key or prepend contains one, in which case another character is chosen
// that occurs in neither. The text parses back to r.
func (r Rule) String() string {
	var b strings.Builder
	r.appendText(&b)
	return b.String()
}

func (r Rule) appendText(b *strings.Builder) {
	sep := separatorFor(r.Key, r.Prepend)
	for _, f := range [...]string{r.Type.String(), r.Scope.String(), r.Key, r.Prepend} {
		b.WriteString(sep)
		b.WriteString(f)
	}
	b.WriteString(sep)
}

// sepCandidates are tried in order for a rule's separator: punctuation,
// which never occurs in type and scope names and is never white space.
const sepCandidates = ":/|,;#%!@=+~^&*"

// separatorFor returns a separator (as its UTF-8 text) occurring in none
// of fields. When every ASCII candidate occurs, it falls back on the first
// character from U+0100 on that does not; the encoding of a single valid
// character cannot straddle a field boundary (its lead byte never occurs
// inside it), so not occurring inside the fields is enough.
func separatorFor(fields ...string) string {
	free := func(sep string) bool {
		for _, f := range fields {
			if strings.Contains(f, sep) {
				return false
			}
		}
		return true
	}
	for i := range len(sepCandidates) {
		if sep := sepCandidates[i : i+1]; free(sep) {
			return sep
		}
	}
	for r := rune(0x100); ; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		if sep := string(r); free(sep) {
			return sep
		}
	}
}
