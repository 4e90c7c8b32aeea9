package idmap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// RuleType is the kind of a translation rule: which direction it applies to
// and what it does there.
type RuleType uint8

// The rule types, named as on the command line.
const (
	// RuleGuest maps guest ids From..From+Count-1 one to one onto host ids
	// To..To+Count-1 (guest to host only).
	RuleGuest RuleType = iota + 1
	// RuleHost maps host ids From..From+Count-1 one to one onto guest ids
	// To..To+Count-1 (host to guest only).
	RuleHost
	// RuleMap maps guest ids From..From+Count-1 one to one onto host ids
	// To..To+Count-1, and those host ids back onto the same guest ids.
	RuleMap
	// RuleSquashGuest maps every guest id From..From+Count-1 onto the single
	// host id To (guest to host only).
	RuleSquashGuest
	// RuleSquashHost maps every host id From..From+Count-1 onto the single
	// guest id To (host to guest only).
	RuleSquashHost
	// RuleForbidGuest refuses the guest ids From..From+Count-1: translating
	// one to a host id fails with a [ForbiddenError] (EPERM). To is unused.
	RuleForbidGuest
)

var ruleTypeNames = [...]string{
	RuleGuest:       "guest",
	RuleHost:        "host",
	RuleMap:         "map",
	RuleSquashGuest: "squash-guest",
	RuleSquashHost:  "squash-host",
	RuleForbidGuest: "forbid-guest",
}

// ruleSyntax is each type's syntax, for error messages.
var ruleSyntax = [...]string{
	RuleGuest:       "guest:GUEST:HOST:COUNT",
	RuleHost:        "host:HOST:GUEST:COUNT",
	RuleMap:         "map:GUEST:HOST:COUNT",
	RuleSquashGuest: "squash-guest:GUEST:HOST:COUNT",
	RuleSquashHost:  "squash-host:HOST:GUEST:COUNT",
	RuleForbidGuest: "forbid-guest:GUEST:COUNT",
}

const typeList = "guest, host, map, squash-guest, squash-host or forbid-guest"

// String returns the type as written in a rule, e.g. "squash-guest".
func (t RuleType) String() string {
	if t.valid() {
		return ruleTypeNames[t]
	}
	return "RuleType(" + strconv.Itoa(int(t)) + ")"
}

func (t RuleType) valid() bool { return t >= RuleGuest && t <= RuleForbidGuest }

// fromGuest reports whether the rule's source range holds guest ids, that
// is, whether it applies guest to host.
func (t RuleType) fromGuest() bool {
	return t == RuleGuest || t == RuleMap || t == RuleSquashGuest || t == RuleForbidGuest
}

// hasTarget reports whether the rule's To field is part of its syntax.
func (t RuleType) hasTarget() bool { return t != RuleForbidGuest }

// targetIsRange reports whether To starts a range of Count ids rather than
// naming a single id.
func (t RuleType) targetIsRange() bool { return t == RuleGuest || t == RuleHost || t == RuleMap }

// Rule is one --translate-uid or --translate-gid rule, TYPE:FROM:TO:COUNT
// (forbid-guest:FROM:COUNT). Which of From and To is a guest id and which a
// host id depends on Type; see the [RuleType] constants.
type Rule struct {
	Type RuleType
	// From is the first id of the source range. For RuleMap it is the
	// first guest id.
	From uint32
	// To is the first id of the target range (guest, host, map) or the
	// single target id (squash-guest, squash-host); 0 for forbid-guest.
	To uint32
	// Count is the number of ids in the source range, at least 1.
	Count uint32
}

// String returns the rule in canonical form: lower-case type, colons,
// decimal numbers without sign or leading zeros, e.g. "map:0:1000:65536" or
// "forbid-guest:0:1000". ParseRule of the result gives back the same rule.
func (r Rule) String() string {
	b := make([]byte, 0, 48)
	b = append(b, r.Type.String()...)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(r.From), 10)
	if r.Type.hasTarget() {
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(r.To), 10)
	}
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(r.Count), 10)
	return string(b)
}

// last returns the last id of the source range. Valid only for a rule that
// passed Validate.
func (r Rule) last() uint32 { return r.From + (r.Count - 1) }

// Validate checks a rule built in code the way ParseRule checks a parsed
// one: a known type, a count of at least 1, and source and target ranges
// that end at or below [MaxID], so that no rule reaches (uid_t)-1. For
// forbid-guest, To must be 0.
func (r Rule) Validate() error {
	if !r.Type.valid() {
		return fmt.Errorf("unknown rule type %d", r.Type)
	}
	if r.Count == 0 {
		return errors.New("COUNT is 0: a rule covers at least one id")
	}
	if uint64(r.From)+uint64(r.Count)-1 > uint64(MaxID) {
		return fmt.Errorf("source range %d+%d ends at %d, past %d, the largest id a rule may name",
			r.From, r.Count, uint64(r.From)+uint64(r.Count)-1, MaxID)
	}
	switch {
	case !r.Type.hasTarget():
		if r.To != 0 {
			return fmt.Errorf("%s takes no target id, but To is %d", r.Type, r.To)
		}
	case r.Type.targetIsRange():
		if uint64(r.To)+uint64(r.Count)-1 > uint64(MaxID) {
			return fmt.Errorf("target range %d+%d ends at %d, past %d, the largest id a rule may name",
				r.To, r.Count, uint64(r.To)+uint64(r.Count)-1, MaxID)
		}
	default: // squash: a single target id
		if r.To > MaxID {
			return fmt.Errorf("target id %d is (uid_t)-1, which means \"unchanged\" to chown(2) and setfsuid(2), not an id", r.To)
		}
	}
	return nil
}

// ParseRule parses one --translate-uid or --translate-gid value, with
// virtiofsd's syntax:
//
//   - The type comes first: a run of letters, digits, '-' and '_', matched
//     against guest, host, map, squash-guest, squash-host and forbid-guest
//     without regard to (ASCII) case.
//   - The first character after it that is none of those is the separator,
//     usually ':'; it may be any other character (e.g. '/', ',', ' '), but
//     the same one must separate all the numbers.
//   - Then come three numbers, FROM, TO and COUNT (two, FROM and COUNT, for
//     forbid-guest): decimal, at most 4294967295, with an optional leading
//     '+' and leading zeros, as Rust's u32 parser takes them.
//
// Unlike virtiofsd, ParseRule also refuses a COUNT of 0 and ranges that run
// past [MaxID] (see [Rule.Validate]); virtiofsd takes a count of 0 as an
// empty rule and lets a target range wrap around.
func ParseRule(s string) (Rule, error) {
	if s == "" {
		return Rule{}, errors.New("empty rule: want TYPE:FROM:TO:COUNT, e.g. map:0:1000:1")
	}
	if !utf8.ValidString(s) {
		return Rule{}, errors.New("not valid UTF-8")
	}
	// The type: letters, digits, '-' and '_' (as virtiofsd's Unicode
	// is_alphanumeric, so that the same character is taken as the separator).
	end := strings.IndexFunc(s, func(r rune) bool { return !isTypeRune(r) })
	if end < 0 {
		return Rule{}, fmt.Errorf("no separator after the type %q: want TYPE:FROM:TO:COUNT, e.g. map:0:1000:1", s)
	}
	name := s[:end]
	sep, size := utf8.DecodeRuneInString(s[end:])
	if name == "" {
		return Rule{}, fmt.Errorf("missing the type before the first %q: want one of %s "+
			"(for guest<->host both ways, write map:GUEST:HOST:COUNT)", sep, typeList)
	}
	t := lookupType(name)
	if t == 0 {
		return Rule{}, fmt.Errorf("unknown type %q: want one of %s", name, typeList)
	}
	fields := strings.Split(s[end+size:], string(sep))
	want := 3
	if !t.hasTarget() {
		want = 2
	}
	if len(fields) != want {
		return Rule{}, fmt.Errorf("%s takes %d numbers separated by %q (%s), got %d field(s)",
			t, want, sep, ruleSyntax[t], len(fields))
	}
	names := strings.Split(ruleSyntax[t], ":")[1:]
	var nums [3]uint32
	for i, f := range fields {
		n, err := parseNumber(f)
		if err != nil {
			return Rule{}, fmt.Errorf("%s %w", names[i], err)
		}
		nums[i] = n
	}
	r := Rule{Type: t, From: nums[0], To: nums[1], Count: nums[2]}
	if !t.hasTarget() {
		r.To, r.Count = 0, nums[1]
	}
	if err := r.Validate(); err != nil {
		return Rule{}, err
	}
	return r, nil
}

// isTypeRune reports whether r can be part of a rule's type: a letter or
// digit, '-' or '_'.
func isTypeRune(r rune) bool { return isAlnum(r) || r == '-' || r == '_' }

// isAlnum is Rust's char::is_alphanumeric, with which virtiofsd tells
// separators from the rest: Alphabetic (letters, letter numbers,
// Other_Alphabetic) or Numeric (Nd, Nl, No).
func isAlnum(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Other_Alphabetic, r)
}

// lookupType matches a type name without regard to ASCII case; 0 if none.
// Non-ASCII letters never match: under Unicode lower-casing, virtiofsd's,
// none of them becomes one of the ASCII letters of a type name, and Go's
// simple case mapping would let "forbİd-guest" through.
func lookupType(name string) RuleType {
	for t := RuleGuest; t <= RuleForbidGuest; t++ {
		if asciiEqualFold(name, ruleTypeNames[t]) {
			return t
		}
	}
	return 0
}

func asciiEqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// parseNumber parses an id or count as Rust's u32::from_str does: decimal
// digits, at most 4294967295, an optional single leading '+'. The error
// starts with the quoted field.
func parseNumber(f string) (uint32, error) {
	digits := strings.TrimPrefix(f, "+")
	if digits == "" {
		return 0, fmt.Errorf("%q: want a decimal number", f)
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, fmt.Errorf("%q: want a decimal number", f)
		}
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q: larger than 4294967295", f)
	}
	return uint32(n), nil
}
