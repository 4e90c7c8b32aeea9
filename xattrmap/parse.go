package xattrmap

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParseError reports a rule string that is not a valid mapping.
type ParseError struct {
	// Offset is the byte offset in the input where the problem is: the
	// start of the offending field, or the end of the input when a field
	// is not terminated.
	Offset int
	// Rule is the 1-based number of the offending rule, as written (a map
	// rule counts as one).
	Rule int
	// Expected describes what the grammar wants at Offset.
	Expected string
	// Found describes what is there instead.
	Found string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("xattrmap: rule %d (byte %d): expected %s, found %s", e.Rule, e.Offset, e.Expected, e.Found)
}

// isSpace reports whether c is white space between rules: C's isspace in
// the C locale.
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// quoteFound quotes s for a ParseError's Found, shortened if long.
func quoteFound(s string) string {
	const max = 32
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// parser walks a rule string.
type parser struct {
	in   string
	pos  int
	rule int    // number of the rule being parsed, 1-based
	sep  string // its separator's text
}

func (p *parser) fail(at int, expected, found string) error {
	return &ParseError{Offset: at, Rule: p.rule, Expected: expected, Found: found}
}

// skipSpace moves past white space and reports whether input remains.
func (p *parser) skipSpace() bool {
	for p.pos < len(p.in) && isSpace(p.in[p.pos]) {
		p.pos++
	}
	return p.pos < len(p.in)
}

// field returns the text from the current position up to the rule's
// separator and moves past the separator. The content is checked with
// check (which returns what was expected, or "" if the content is fine)
// before the separator is required, so a misspelled field is reported as
// such even when the separator is missing too.
func (p *parser) field(what string, check func(string) string) (string, error) {
	start := p.pos
	n := strings.Index(p.in[start:], p.sep)
	end := len(p.in)
	if n >= 0 {
		end = start + n
	}
	f := p.in[start:end]
	if check != nil {
		if exp := check(f); exp != "" {
			return "", p.fail(start, exp, quoteFound(f))
		}
	}
	if i := strings.IndexByte(f, 0); i >= 0 {
		return "", p.fail(start+i, what+" text", "a NUL byte")
	}
	if n < 0 {
		return "", p.fail(end, fmt.Sprintf("%q ending the %s field", p.sep, what), "end of input")
	}
	p.pos = end + len(p.sep)
	return f, nil
}

const (
	expectType  = `type "prefix", "ok", "bad", "unsupported" or "map"`
	expectScope = `scope "client", "server" or "all"`
)

func checkType(f string) string {
	switch f {
	case "prefix", "ok", "bad", "unsupported", "map":
		return ""
	}
	return expectType
}

func checkScope(f string) string {
	switch f {
	case "client", "server", "all":
		return ""
	}
	return expectScope
}

// Parse compiles a --xattrmap rule string. See the package documentation
// for the grammar. The error, if any, is a [*ParseError].
func Parse(s string) (*Map, error) {
	p := &parser{in: s}
	var rules []Rule
	for p.skipSpace() {
		p.rule++
		start := p.pos
		if s[start] == 0 {
			return nil, p.fail(start, "a separator character starting a rule", "a NUL byte")
		}
		_, size := utf8.DecodeRuneInString(s[start:])
		p.sep = s[start : start+size]
		p.pos += size

		typ, err := p.field("type", checkType)
		if err != nil {
			return nil, err
		}
		if typ == "map" {
			key, err := p.field("key", nil)
			if err != nil {
				return nil, err
			}
			prepend, err := p.field("prepend", nil)
			if err != nil {
				return nil, err
			}
			if p.skipSpace() {
				return nil, p.fail(p.pos, "end of input after the map rule (it must be the last rule)", quoteFound(s[p.pos:]))
			}
			rules = append(rules, MapRules(key, prepend)...)
			break
		}
		scope, err := p.field("scope", checkScope)
		if err != nil {
			return nil, err
		}
		key, err := p.field("key", nil)
		if err != nil {
			return nil, err
		}
		prepend, err := p.field("prepend", nil)
		if err != nil {
			return nil, err
		}
		rules = append(rules, Rule{Type: parseType(typ), Scope: parseScope(scope), Key: key, Prepend: prepend})
	}
	if len(rules) == 0 {
		return nil, &ParseError{Offset: len(s), Rule: 1, Expected: "a rule", Found: "end of input"}
	}
	return compile(rules), nil
}

// MustParse is like [Parse] but panics on error. It is meant for constant
// rule strings in tests and examples.
func MustParse(s string) *Map {
	m, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return m
}

func parseType(f string) Type {
	for t, name := range typeNames {
		if name == f && t != 0 {
			return Type(t)
		}
	}
	return 0
}

func parseScope(f string) Scope {
	switch f {
	case "client":
		return ScopeClient
	case "server":
		return ScopeServer
	}
	return ScopeAll
}
