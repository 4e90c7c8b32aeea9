package xattrmap

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
)

// securityCapability is the attribute the host kernel removes on write,
// truncate and chown.
const securityCapability = "security.capability"

// Map is a compiled mapping. It is immutable and safe for concurrent use.
// A nil *Map is the identity mapping: every name passes unchanged in both
// directions.
type Map struct {
	rules []Rule // as parsed, map sugar expanded; no implicit default
	// client and server are the rules taking part in each direction, in
	// order, cut after the first catch-all and ending in one (the implicit
	// default if the rules have none).
	client, server []step
	terminated     bool
	text           string
	secCap         string // host name of security.capability when remapped
}

// step is one rule as seen from one direction.
type step struct {
	match   string // key (client direction) or prepend (server direction)
	prepend string
	typ     Type
	index   int // into Map.rules; -1 for the implicit default
}

// defaultStep is the implicit final rule, ":bad:all:::".
var defaultStep = step{typ: TypeBad, index: -1}

// defaultRule is what defaultStep stands for.
var defaultRule = Rule{Type: TypeBad, Scope: ScopeAll}

// New compiles rules, which must not be empty, into a Map.
func New(rules ...Rule) (*Map, error) {
	if len(rules) == 0 {
		return nil, errors.New("xattrmap: no rules")
	}
	for i, r := range rules {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("xattrmap: rule %d: %w", i+1, err)
		}
	}
	return compile(slices.Clone(rules)), nil
}

// compile builds a Map from valid rules, which it keeps.
func compile(rules []Rule) *Map {
	m := &Map{rules: rules}
	var clientDone, serverDone bool
	for i, r := range rules {
		if r.Scope&ScopeClient != 0 && !clientDone {
			m.client = append(m.client, step{match: r.Key, prepend: r.Prepend, typ: r.Type, index: i})
			clientDone = r.Key == ""
		}
		if r.Scope&ScopeServer != 0 && !serverDone {
			m.server = append(m.server, step{match: r.Prepend, prepend: r.Prepend, typ: r.Type, index: i})
			serverDone = r.Prepend == ""
		}
	}
	m.terminated = clientDone && serverDone
	if !clientDone {
		m.client = append(m.client, defaultStep)
	}
	if !serverDone {
		m.server = append(m.server, defaultStep)
	}

	var b strings.Builder
	for i, r := range rules {
		if i > 0 {
			b.WriteByte(' ')
		}
		r.appendText(&b)
	}
	m.text = b.String()

	if h, ok := m.HostNameOf(securityCapability); ok && h != securityCapability {
		m.secCap = h
	}
	return m
}

// clientStep returns the rule deciding the guest name.
func (m *Map) clientStep(guest string) *step {
	for i := range m.client {
		s := &m.client[i]
		if strings.HasPrefix(guest, s.match) {
			return s
		}
	}
	return &defaultStep // not reached: the list ends in a catch-all
}

// serverStep returns the rule deciding the host name.
func (m *Map) serverStep(host string) *step {
	for i := range m.server {
		s := &m.server[i]
		if strings.HasPrefix(host, s.match) {
			return s
		}
	}
	return &defaultStep
}

// serverStepBytes is serverStep for a name in a list.
func (m *Map) serverStepBytes(host []byte) *step {
	for i := range m.server {
		s := &m.server[i]
		if len(host) >= len(s.match) && string(host[:len(s.match)]) == s.match {
			return s
		}
	}
	return &defaultStep
}

// DeniedError reports a guest name the map refuses. It unwraps to its
// Errno, so errors.Is(err, syscall.EPERM) and errors.As into a
// syscall.Errno work.
type DeniedError struct {
	// Name is the guest's attribute name.
	Name string
	// Rule is the rule that refused it; Index is its 0-based position in
	// [Map.Rules], or -1 when no rule matched and the implicit default
	// ":bad:all:::" applied.
	Rule  Rule
	Index int
	// Errno is EPERM for a bad rule, ENOTSUP for an unsupported one.
	Errno syscall.Errno
}

func (e *DeniedError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("xattrmap: guest attribute %q matches no rule (implicit %s): %v", e.Name, e.Rule, e.Errno)
	}
	return fmt.Sprintf("xattrmap: guest attribute %q refused by rule %d %s: %v", e.Name, e.Index+1, e.Rule, e.Errno)
}

// Unwrap returns e.Errno.
func (e *DeniedError) Unwrap() error { return e.Errno }

func (m *Map) deny(s *step, guest string) error {
	e := &DeniedError{Name: guest, Index: s.index, Rule: defaultRule, Errno: syscall.EPERM}
	if s.index >= 0 {
		e.Rule = m.rules[s.index]
	}
	if s.typ == TypeUnsupported {
		e.Errno = syscall.ENOTSUP
	}
	return e
}

// ToHost maps a guest attribute name to the host name to use for
// getxattr, setxattr and removexattr. A refused name gives a
// [*DeniedError] (EPERM or ENOTSUP). A name that passes unchanged is
// returned without allocating.
func (m *Map) ToHost(guest string) (host string, err error) {
	if m == nil {
		return guest, nil
	}
	switch s := m.clientStep(guest); s.typ {
	case TypeOK:
		return guest, nil
	case TypePrefix:
		return s.prepend + guest, nil
	default:
		return "", m.deny(s, guest)
	}
}

// AppendHost appends the host name for guest (see [Map.ToHost]) to dst,
// for building a system call's NUL-terminated name without allocating.
// On error dst is returned unchanged.
func (m *Map) AppendHost(dst []byte, guest string) ([]byte, error) {
	if m == nil {
		return append(dst, guest...), nil
	}
	switch s := m.clientStep(guest); s.typ {
	case TypeOK:
		return append(dst, guest...), nil
	case TypePrefix:
		return append(append(dst, s.prepend...), guest...), nil
	default:
		return dst, m.deny(s, guest)
	}
}

// HostNameOf reports the host name the guest name maps to, and false if
// the map refuses the guest name.
func (m *Map) HostNameOf(guest string) (string, bool) {
	if m == nil {
		return guest, true
	}
	switch s := m.clientStep(guest); s.typ {
	case TypeOK:
		return guest, true
	case TypePrefix:
		return s.prepend + guest, true
	}
	return "", false
}

// SecurityCapability returns the host name the guest's security.capability
// is stored under, and whether that differs from security.capability. When
// it does, the host kernel no longer removes the guest's file capabilities
// on write, truncate and chown, and the daemon must remove this name
// itself. When the map refuses security.capability or passes it unchanged
// it returns "", false.
func (m *Map) SecurityCapability() (host string, remapped bool) {
	if m == nil || m.secCap == "" {
		return "", false
	}
	return m.secCap, true
}

// ToGuest maps a host attribute name, as listxattr returns it, to the name
// the guest sees; visible is false if the name is to be hidden. It never
// allocates.
func (m *Map) ToGuest(host string) (guest string, visible bool) {
	if m == nil {
		return host, true
	}
	switch s := m.serverStep(host); s.typ {
	case TypeOK:
		return host, true
	case TypePrefix:
		if guest = host[len(s.match):]; guest != "" {
			return guest, true
		}
	}
	return "", false
}

// FilterList maps a listxattr result, a sequence of NUL-terminated host
// names, to the list the guest sees: each name mapped by [Map.ToGuest],
// hidden names dropped, and empty entries dropped. It works in place: the
// result shares hostList's storage, which it overwrites, and is never
// longer. The only error is a list whose last name lacks its NUL
// terminator; hostList is then left unchanged.
func (m *Map) FilterList(hostList []byte) ([]byte, error) {
	if len(hostList) > 0 && hostList[len(hostList)-1] != 0 {
		start := bytes.LastIndexByte(hostList, 0) + 1
		return nil, fmt.Errorf("xattrmap: attribute list of %d bytes: name at byte %d (%s) lacks a NUL terminator",
			len(hostList), start, quoteFound(string(hostList[start:])))
	}
	if m == nil {
		return hostList, nil
	}
	out := 0
	for in := 0; in < len(hostList); {
		end := in + bytes.IndexByte(hostList[in:], 0) // found: the list ends in NUL
		name := hostList[in:end]
		next := end + 1
		if len(name) > 0 {
			switch s := m.serverStepBytes(name); s.typ {
			case TypeOK:
				out += copy(hostList[out:], hostList[in:next])
			case TypePrefix:
				if len(name) > len(s.match) {
					out += copy(hostList[out:], hostList[in+len(s.match):next])
				}
			}
		}
		in = next
	}
	return hostList[:out], nil
}

// Rules returns the map's rules, the map sugar expanded, without the
// implicit default.
func (m *Map) Rules() []Rule {
	if m == nil {
		return nil
	}
	return slices.Clone(m.rules)
}

// Terminated reports whether the rules end both directions with an
// explicit catch-all (a rule whose key, respectively prepend, is empty),
// so that the implicit default never applies.
func (m *Map) Terminated() bool {
	return m == nil || m.terminated
}

// String returns the map's canonical rule text: each rule of [Map.Rules]
// in the rule language, separated by spaces, the map sugar expanded. It
// parses back to a map with the same rules. A nil Map gives "".
func (m *Map) String() string {
	if m == nil {
		return ""
	}
	return m.text
}
