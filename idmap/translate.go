package idmap

import (
	"fmt"
	"slices"
	"strings"
)

// UIDMap translates user ids between guest and host, as the rules of
// --translate-uid say (not to be confused with --uid-map, which is a
// [NamespaceMap]).
//
// The zero UIDMap, like one built from no rules, is the identity. A UIDMap
// is immutable, cheap to copy, and safe for concurrent use.
type UIDMap struct{ t *table }

// GIDMap translates group ids between guest and host, as the rules of
// --translate-gid say (not to be confused with --gid-map, which is a
// [NamespaceMap]).
//
// The zero GIDMap, like one built from no rules, is the identity. A GIDMap
// is immutable, cheap to copy, and safe for concurrent use.
type GIDMap struct{ t *table }

// ParseUIDMap parses the values of --translate-uid, one rule each (see
// [ParseRule]), in the order given, and builds the map. A malformed rule,
// or one whose source range overlaps that of an earlier rule in the same
// direction, gives a [*RuleError] naming the rule, its position and, for an
// overlap, the earlier rule.
func ParseUIDMap(values []string) (UIDMap, error) {
	t, err := parseTable(UID, values)
	return UIDMap{t}, err
}

// ParseGIDMap is [ParseUIDMap] for the values of --translate-gid.
func ParseGIDMap(values []string) (GIDMap, error) {
	t, err := parseTable(GID, values)
	return GIDMap{t}, err
}

// NewUIDMap builds a UID map from rules made in code. It checks them as
// [ParseUIDMap] does; error messages show each rule's canonical text.
func NewUIDMap(rules []Rule) (UIDMap, error) {
	t, err := newTable(UID, rules, nil)
	return UIDMap{t}, err
}

// NewGIDMap is [NewUIDMap] for group ids.
func NewGIDMap(rules []Rule) (GIDMap, error) {
	t, err := newTable(GID, rules, nil)
	return GIDMap{t}, err
}

// ToHost translates a UID that came from the guest into the host UID to use.
// An id no guest-to-host rule covers maps to itself. For an id a
// forbid-guest rule covers it returns [NoID] and a [*ForbiddenError], which
// unwraps to EPERM. It does not allocate.
func (m UIDMap) ToHost(id GuestUID) (HostUID, error) {
	if m.t == nil {
		return HostUID(id), nil
	}
	h, err := m.t.toHost(uint32(id))
	return HostUID(h), err
}

// ToGuest translates a host UID into the UID the guest sees. An id no
// host-to-guest rule covers maps to itself. It does not allocate.
func (m UIDMap) ToGuest(id HostUID) GuestUID {
	if m.t == nil {
		return GuestUID(id)
	}
	return GuestUID(m.t.toGuest(uint32(id)))
}

// IsIdentity reports whether m was built from no rules, so that both
// directions are the identity.
func (m UIDMap) IsIdentity() bool { return m.t == nil }

// Rules returns a copy of the rules m was built from, in their order.
func (m UIDMap) Rules() []Rule { return m.t.ruleList() }

// String returns m's rules in canonical form ([Rule.String]), separated by
// spaces; "" for the identity.
func (m UIDMap) String() string { return m.t.String() }

// ToHost translates a GID that came from the guest into the host GID to use;
// see [UIDMap.ToHost].
func (m GIDMap) ToHost(id GuestGID) (HostGID, error) {
	if m.t == nil {
		return HostGID(id), nil
	}
	h, err := m.t.toHost(uint32(id))
	return HostGID(h), err
}

// ToGuest translates a host GID into the GID the guest sees; see
// [UIDMap.ToGuest].
func (m GIDMap) ToGuest(id HostGID) GuestGID {
	if m.t == nil {
		return GuestGID(id)
	}
	return GuestGID(m.t.toGuest(uint32(id)))
}

// IsIdentity reports whether m was built from no rules.
func (m GIDMap) IsIdentity() bool { return m.t == nil }

// Rules returns a copy of the rules m was built from, in their order.
func (m GIDMap) Rules() []Rule { return m.t.ruleList() }

// String returns m's rules in canonical form, separated by spaces; "" for
// the identity.
func (m GIDMap) String() string { return m.t.String() }

// op is what an entry does to the ids of its source range.
type op uint8

const (
	opShift  op = iota // target + (id - first)
	opSquash           // target
	opForbid           // refuse with err
)

// entry is one source range of one direction, first..last inclusive.
type entry struct {
	first, last uint32
	target      uint32
	op          op
	rule        int             // index into table.rules
	err         *ForbiddenError // for opForbid
}

// table is the translation for one kind of id. Each direction is a slice
// of entries sorted by first, with disjoint ranges, searched in O(log n).
type table struct {
	kind  Kind
	rules []Rule
	texts []string // each rule as given, for error messages
	g2h   []entry  // guest -> host
	h2g   []entry  // host -> guest
}

func parseTable(k Kind, values []string) (*table, error) {
	if len(values) == 0 {
		return nil, nil
	}
	rules := make([]Rule, len(values))
	for i, v := range values {
		r, err := ParseRule(v)
		if err != nil {
			return nil, &RuleError{Flag: k.TranslateFlag(), Index: i + 1, Text: v, Err: err}
		}
		rules[i] = r
	}
	return newTable(k, rules, values)
}

// newTable builds the table for rules; texts, if not nil, are the rules as
// given (otherwise their canonical form stands in).
func newTable(k Kind, rules []Rule, texts []string) (*table, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	t := &table{kind: k, rules: slices.Clone(rules)}
	if texts != nil {
		t.texts = slices.Clone(texts)
	} else {
		t.texts = make([]string, len(rules))
		for i, r := range rules {
			t.texts[i] = r.String()
		}
	}
	for i, r := range t.rules {
		if err := r.Validate(); err != nil {
			return nil, t.ruleError(i, err)
		}
		e := entry{first: r.From, last: r.last(), target: r.To, rule: i}
		switch r.Type {
		case RuleSquashGuest, RuleSquashHost:
			e.op = opSquash
		case RuleForbidGuest:
			e.op = opForbid
			e.err = &ForbiddenError{Kind: k, Rule: r, Index: i + 1, Text: t.texts[i]}
		}
		var err error
		if r.Type.fromGuest() {
			t.g2h, err = t.insert(t.g2h, e, "guest")
		} else {
			t.h2g, err = t.insert(t.h2g, e, "host")
		}
		if err == nil && r.Type == RuleMap {
			back := entry{first: r.To, last: r.To + (r.Count - 1), target: r.From, op: opShift, rule: i}
			t.h2g, err = t.insert(t.h2g, back, "host")
		}
		if err != nil {
			return nil, t.ruleError(i, err)
		}
	}
	return t, nil
}

func (t *table) ruleError(i int, err error) error {
	return &RuleError{Flag: t.kind.TranslateFlag(), Index: i + 1, Text: t.texts[i], Err: err}
}

// insert adds e to the sorted, disjoint entries es, or reports the earlier
// rule whose range e overlaps. side ("guest" or "host") names the ids of
// the source range.
func (t *table) insert(es []entry, e entry, side string) ([]entry, error) {
	// pos is the first entry that starts after e does.
	pos, _ := slices.BinarySearchFunc(es, e.first, func(x entry, first uint32) int {
		if x.first <= first {
			return -1
		}
		return 1
	})
	var clash *entry
	switch {
	case pos > 0 && es[pos-1].last >= e.first:
		clash = &es[pos-1]
	case pos < len(es) && es[pos].first <= e.last:
		clash = &es[pos]
	}
	if clash != nil {
		return es, fmt.Errorf("%s %s %s of rule #%d %q (the source ranges of rules must not overlap)",
			span(side, t.kind, e.first, e.last), overlaps(e.first, e.last), span(side, t.kind, clash.first, clash.last),
			clash.rule+1, t.texts[clash.rule])
	}
	return slices.Insert(es, pos, e), nil
}

// find returns the entry whose range holds id, or nil. It is a plain binary
// search, so that it neither allocates nor calls through a function value.
func find(es []entry, id uint32) *entry {
	lo, hi := 0, len(es)
	for lo < hi { // invariant: es[:lo] start at or below id, es[hi:] above it
		m := int(uint(lo+hi) >> 1)
		if es[m].first <= id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 || es[lo-1].last < id {
		return nil
	}
	return &es[lo-1]
}

func (t *table) toHost(id uint32) (uint32, error) {
	e := find(t.g2h, id)
	if e == nil {
		return id, nil
	}
	switch e.op {
	case opShift:
		return e.target + (id - e.first), nil
	case opSquash:
		return e.target, nil
	}
	return NoID, e.err
}

func (t *table) toGuest(id uint32) uint32 {
	e := find(t.h2g, id)
	if e == nil {
		return id
	}
	if e.op == opSquash {
		return e.target
	}
	return e.target + (id - e.first)
}

func (t *table) ruleList() []Rule {
	if t == nil {
		return nil
	}
	return slices.Clone(t.rules)
}

func (t *table) String() string {
	if t == nil {
		return ""
	}
	var b strings.Builder
	for i, r := range t.rules {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(r.String())
	}
	return b.String()
}
