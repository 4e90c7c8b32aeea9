package idmap

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxExtents is the most lines the kernel takes in a uid_map or gid_map
// (UID_GID_MAP_MAX_EXTENTS, since Linux 4.15).
const MaxExtents = 340

// Extent is one --uid-map or --gid-map value, :NAMESPACE_ID:HOST_ID:COUNT:,
// and one line of /proc/PID/uid_map or gid_map: the Count host ids from
// Outside appear in the user namespace as the ids from Inside.
type Extent struct {
	Inside  uint32 // first id inside the namespace
	Outside uint32 // first id outside it, on the host
	Count   uint32 // number of ids, at least 1
}

// String returns the extent as a flag value, ":INSIDE:OUTSIDE:COUNT:".
// ParseExtent of the result gives back the same extent.
func (e Extent) String() string {
	b := make([]byte, 0, 36)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(e.Inside), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(e.Outside), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(e.Count), 10)
	b = append(b, ':')
	return string(b)
}

// Validate checks an extent as the kernel checks a line written to uid_map:
// a count of at least 1, and inside and outside ranges that end at or below
// [MaxID] (neither may reach (uid_t)-1 or wrap around).
func (e Extent) Validate() error {
	if e.Count == 0 {
		return errors.New("COUNT is 0: an extent maps at least one id")
	}
	if end := uint64(e.Inside) + uint64(e.Count) - 1; end > uint64(MaxID) {
		return fmt.Errorf("namespace range %d+%d ends at %d, past %d, the largest id the kernel maps",
			e.Inside, e.Count, end, MaxID)
	}
	if end := uint64(e.Outside) + uint64(e.Count) - 1; end > uint64(MaxID) {
		return fmt.Errorf("host range %d+%d ends at %d, past %d, the largest id the kernel maps",
			e.Outside, e.Count, end, MaxID)
	}
	return nil
}

// ParseExtent parses one --uid-map or --gid-map value with virtiofsd's
// syntax: three decimal numbers NAMESPACE_ID, HOST_ID and COUNT (at most
// 4294967295, optional leading '+'), each preceded by a separator and the
// last followed by one, e.g. ":0:100000:65536:". The separator is the
// value's last character; it may be any character but a letter or digit,
// and must also be its first. Unlike virtiofsd, which leaves these to the
// kernel, ParseExtent also refuses what the kernel would (see
// [Extent.Validate]).
func ParseExtent(s string) (Extent, error) {
	const want = "(:NAMESPACE_ID:HOST_ID:COUNT:, e.g. :0:100000:65536:)"
	if s == "" {
		return Extent{}, errors.New("empty: want " + want)
	}
	if !utf8.ValidString(s) {
		return Extent{}, errors.New("not valid UTF-8")
	}
	sep, size := utf8.DecodeLastRuneInString(s)
	if isAlnum(sep) {
		return Extent{}, fmt.Errorf("ends with %q, not a separator: want %s", sep, want)
	}
	body, ok := strings.CutPrefix(s[:len(s)-size], string(sep))
	if !ok {
		return Extent{}, fmt.Errorf("does not start with %q, the separator it ends with: want %s", sep, want)
	}
	fields := strings.Split(body, string(sep))
	if len(fields) != 3 {
		return Extent{}, fmt.Errorf("want 3 numbers separated by %q (%s), got %d field(s)", sep, want, len(fields))
	}
	var nums [3]uint32
	for i, name := range [...]string{"NAMESPACE_ID", "HOST_ID", "COUNT"} {
		n, err := parseNumber(fields[i])
		if err != nil {
			return Extent{}, fmt.Errorf("%s %w", name, err)
		}
		nums[i] = n
	}
	e := Extent{Inside: nums[0], Outside: nums[1], Count: nums[2]}
	if err := e.Validate(); err != nil {
		return Extent{}, err
	}
	return e, nil
}

// NamespaceMap is the user namespace map for one kind of id: the values of
// --uid-map or of --gid-map, checked against the kernel's rules, ready to
// be written to /proc/PID/uid_map or gid_map, or passed to newuidmap or
// newgidmap. The daemon does not translate through it; the kernel does.
//
// The zero NamespaceMap is empty: the sandbox then picks its default.
type NamespaceMap struct {
	kind    Kind
	extents []Extent
}

// ParseNamespaceMap parses the values of --uid-map (k == UID) or --gid-map
// (k == GID), one extent each (see [ParseExtent]). Besides each extent's
// own checks, it refuses what the kernel would refuse in the map as a
// whole: namespace ranges or host ranges that overlap, more than
// [MaxExtents] extents, or text of a page or more. Errors are
// [*RuleError] values that name the value, its position and, for an
// overlap, the earlier value; a map too long for the kernel is refused with
// a plain error.
func ParseNamespaceMap(k Kind, values []string) (NamespaceMap, error) {
	extents := make([]Extent, len(values))
	for i, v := range values {
		e, err := ParseExtent(v)
		if err != nil {
			return NamespaceMap{}, &RuleError{Flag: k.NamespaceFlag(), Index: i + 1, Text: v, Err: err}
		}
		extents[i] = e
	}
	return newNamespaceMap(k, extents, values)
}

// NewNamespaceMap checks extents made in code as [ParseNamespaceMap] checks
// parsed ones, for instance the sandbox's default of mapping its own id.
func NewNamespaceMap(k Kind, extents []Extent) (NamespaceMap, error) {
	return newNamespaceMap(k, extents, nil)
}

func newNamespaceMap(k Kind, extents []Extent, texts []string) (NamespaceMap, error) {
	text := func(i int) string {
		if texts != nil {
			return texts[i]
		}
		return extents[i].String()
	}
	fail := func(i int, err error) (NamespaceMap, error) {
		return NamespaceMap{}, &RuleError{Flag: k.NamespaceFlag(), Index: i + 1, Text: text(i), Err: err}
	}
	if len(extents) > MaxExtents {
		return fail(MaxExtents, fmt.Errorf("more than %d values: the kernel takes at most %d lines in a %s map",
			MaxExtents, MaxExtents, strings.ToLower(k.String())))
	}
	for i, e := range extents {
		if err := e.Validate(); err != nil {
			return fail(i, err)
		}
		// The kernel checks each new line against every earlier one, in
		// both id spaces; so does this, to name the earlier value.
		for j, p := range extents[:i] {
			side, first, last, pfirst, plast := "namespace", e.Inside, e.Inside+(e.Count-1), p.Inside, p.Inside+(p.Count-1)
			if !(pfirst <= last && plast >= first) {
				side, first, last, pfirst, plast = "host", e.Outside, e.Outside+(e.Count-1), p.Outside, p.Outside+(p.Count-1)
				if !(pfirst <= last && plast >= first) {
					continue
				}
			}
			return fail(i, fmt.Errorf("%s %s %s of rule #%d %q (the kernel refuses overlapping extents)",
				span(side, k, first, last), overlaps(first, last), span(side, k, pfirst, plast), j+1, text(j)))
		}
	}
	m := NamespaceMap{kind: k, extents: slices.Clone(extents)}
	if len(extents) > 0 {
		if n, page := len(m.ProcText()), os.Getpagesize(); n >= page {
			return NamespaceMap{}, fmt.Errorf("%s: the map is %d bytes as %s text; the kernel takes less than a page (%d bytes)",
				k.NamespaceFlag(), n, m.procFile(), page)
		}
	}
	return m, nil
}

// Kind returns the kind of ids the map is for.
func (m NamespaceMap) Kind() Kind { return m.kind }

// IsEmpty reports whether the map has no extents.
func (m NamespaceMap) IsEmpty() bool { return len(m.extents) == 0 }

// Extents returns a copy of the map's extents, in their order.
func (m NamespaceMap) Extents() []Extent { return slices.Clone(m.extents) }

// ProcText returns the map as the text to write, in one write(2), to
// /proc/PID/uid_map or gid_map: one "INSIDE OUTSIDE COUNT\n" line per
// extent.
func (m NamespaceMap) ProcText() string {
	b := make([]byte, 0, 33*len(m.extents))
	for _, e := range m.extents {
		b = strconv.AppendUint(b, uint64(e.Inside), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(e.Outside), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(e.Count), 10)
		b = append(b, '\n')
	}
	return string(b)
}

// NewIDMapArgs returns the map as the arguments newuidmap(1) or
// newgidmap(1) take after the PID: INSIDE OUTSIDE COUNT for each extent.
func (m NamespaceMap) NewIDMapArgs() []string {
	args := make([]string, 0, 3*len(m.extents))
	for _, e := range m.extents {
		args = append(args,
			strconv.FormatUint(uint64(e.Inside), 10),
			strconv.FormatUint(uint64(e.Outside), 10),
			strconv.FormatUint(uint64(e.Count), 10))
	}
	return args
}

// String returns the extents as flag values ([Extent.String]), separated by
// spaces; "" for an empty map.
func (m NamespaceMap) String() string {
	parts := make([]string, len(m.extents))
	for i, e := range m.extents {
		parts[i] = e.String()
	}
	return strings.Join(parts, " ")
}

func (m NamespaceMap) procFile() string {
	if m.kind == GID {
		return "gid_map"
	}
	return "uid_map"
}
