package idmap

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseExtent(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Extent
	}{
		{":0:100000:65536:", Extent{0, 100000, 65536}},
		{":1000:1000:1:", Extent{1000, 1000, 1}},
		// Any separator but a letter or digit; '-' and '_' too.
		{"/0/1/2/", Extent{0, 1, 2}},
		{"-0-1-2-", Extent{0, 1, 2}},
		{"_0_1_2_", Extent{0, 1, 2}},
		{" 0 1 2 ", Extent{0, 1, 2}},
		{"+1+2+3+", Extent{1, 2, 3}},
		{"→0→1→2→", Extent{0, 1, 2}},
		{":+0:007:+1:", Extent{0, 7, 1}},
		// Boundaries: both ranges may end at MaxID.
		{":0:0:4294967295:", Extent{0, 0, 4294967295}},
		{":4294967294:4294967294:1:", Extent{4294967294, 4294967294, 1}},
	} {
		got, err := ParseExtent(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseExtent(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if again, err := ParseExtent(got.String()); err != nil || again != got {
			t.Errorf("ParseExtent(%q) = %+v, %v: String() does not round-trip", got.String(), again, err)
		}
	}

	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", []string{"empty: want (:NAMESPACE_ID:HOST_ID:COUNT:"}},
		{":0:1:2", []string{`ends with '2', not a separator`}},
		{":0:1:x", []string{`ends with 'x', not a separator`}},
		{"0:1:2:", []string{`does not start with ':', the separator it ends with`}},
		{"/0:1:2:", []string{`does not start with ':'`}},
		{":", []string{`does not start with ':'`}},
		{"::", []string{"want 3 numbers separated by ':'", "got 1 field(s)"}},
		{":0:1:", []string{"got 2 field(s)"}},
		{":0:1:2:3:", []string{"got 4 field(s)"}},
		{"/0:1:2/", []string{"got 1 field(s)"}},
		{":0::2:", []string{`HOST_ID "": want a decimal number`}},
		{":a:0:1:", []string{`NAMESPACE_ID "a": want a decimal number`}},
		{":-1:0:1:", []string{`NAMESPACE_ID "-1": want a decimal number`}},
		{":0:0:4294967296:", []string{`COUNT "4294967296": larger than 4294967295`}},
		{":0:1:0:", []string{"COUNT is 0"}},
		{":4294967295:0:1:", []string{"namespace range 4294967295+1 ends at 4294967295, past 4294967294"}},
		{":0:4294967295:1:", []string{"host range 4294967295+1 ends at 4294967295"}},
		{":1:0:4294967295:", []string{"namespace range 1+4294967295"}},
		{":0:1:4294967295:", []string{"host range 1+4294967295"}},
		{":0:1:2\xff", []string{"not valid UTF-8"}},
	} {
		e, err := ParseExtent(tc.in)
		if err == nil {
			t.Errorf("ParseExtent(%q) = %+v, want an error", tc.in, e)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseExtent(%q) error %q does not contain %q", tc.in, err, w)
			}
		}
	}
}

func TestNamespaceMap(t *testing.T) {
	m, err := ParseNamespaceMap(UID, []string{":0:100000:65536:", "/65536/1000/1/"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.ProcText(), "0 100000 65536\n65536 1000 1\n"; got != want {
		t.Errorf("ProcText = %q, want %q", got, want)
	}
	if got, want := m.NewIDMapArgs(), []string{"0", "100000", "65536", "65536", "1000", "1"}; !slices.Equal(got, want) {
		t.Errorf("NewIDMapArgs = %q, want %q", got, want)
	}
	if got, want := m.String(), ":0:100000:65536: :65536:1000:1:"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if m.Kind() != UID || m.IsEmpty() || !slices.Equal(m.Extents(), []Extent{{0, 100000, 65536}, {65536, 1000, 1}}) {
		t.Errorf("map %v: kind %v, extents %v", m, m.Kind(), m.Extents())
	}
	again, err := ParseNamespaceMap(UID, strings.Fields(m.String()))
	if err != nil || !slices.Equal(again.Extents(), m.Extents()) {
		t.Errorf("round trip: %v, %v", again, err)
	}

	var empty NamespaceMap
	if !empty.IsEmpty() || empty.ProcText() != "" || len(empty.NewIDMapArgs()) != 0 || empty.String() != "" {
		t.Errorf("zero NamespaceMap is not empty")
	}
	if m, err := ParseNamespaceMap(GID, nil); err != nil || !m.IsEmpty() {
		t.Errorf("no values: %v, %v", m, err)
	}
	// The sandbox's default: its own id only.
	if m, err := NewNamespaceMap(GID, []Extent{{1000, 1000, 1}}); err != nil || m.ProcText() != "1000 1000 1\n" {
		t.Errorf("NewNamespaceMap: %q, %v", m.ProcText(), err)
	}
}

func TestNamespaceMapErrors(t *testing.T) {
	for _, tc := range []struct {
		kind   Kind
		values []string
		want   string
	}{
		{UID, []string{":0:100000:65536:", "bad"},
			`--uid-map rule #2 "bad": ends with 'd', not a separator: want (:NAMESPACE_ID:HOST_ID:COUNT:, e.g. :0:100000:65536:)`},
		{GID, []string{":0:100:10:", ":5:200:10:"},
			`--gid-map rule #2 ":5:200:10:": namespace GIDs 5-14 overlap namespace GIDs 0-9 of rule #1 ":0:100:10:" (the kernel refuses overlapping extents)`},
		{UID, []string{":0:100:10:", ":10:105:1:"},
			`--uid-map rule #2 ":10:105:1:": host UID 105 overlaps host UIDs 100-109 of rule #1 ":0:100:10:" (the kernel refuses overlapping extents)`},
		{UID, []string{":0:100:10:", ":20:200:10:", ":9:300:12:"},
			`--uid-map rule #3 ":9:300:12:": namespace UIDs 9-20 overlap namespace UIDs 0-9 of rule #1 ":0:100:10:" (the kernel refuses overlapping extents)`},
		{GID, []string{":0:0:0:"},
			`--gid-map rule #1 ":0:0:0:": COUNT is 0: an extent maps at least one id`},
	} {
		_, err := ParseNamespaceMap(tc.kind, tc.values)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: error\n\t%v\nwant\n\t%s", tc.values, err, tc.want)
		}
		var re *RuleError
		if !errors.As(err, &re) || re.Text != tc.values[re.Index-1] {
			t.Errorf("%v: error %#v is not a RuleError naming its value", tc.values, err)
		}
	}

	// A namespace range may overlap another extent's host range: they are
	// different id spaces.
	if _, err := ParseNamespaceMap(UID, []string{":0:1000:10:", ":1000:0:10:"}); err != nil {
		t.Errorf("crossed extents: %v", err)
	}

	var many []Extent
	for i := range uint32(MaxExtents + 1) {
		many = append(many, Extent{i, i, 1})
	}
	if _, err := NewNamespaceMap(UID, many[:MaxExtents]); err != nil && !strings.Contains(err.Error(), "page") {
		t.Errorf("%d extents: %v", MaxExtents, err)
	}
	_, err := NewNamespaceMap(UID, many)
	if err == nil || !strings.Contains(err.Error(), `--uid-map rule #341 ":340:340:1:": more than 340 values`) {
		t.Errorf("%d extents: %v", len(many), err)
	}

	// Each line "4000000000 3000000000 1\n" is 24 bytes.
	page := os.Getpagesize()
	n := (page + 23) / 24
	if n > MaxExtents {
		t.Skipf("a page of %d bytes needs more than %d lines", page, MaxExtents)
	}
	var long []Extent
	for i := range uint32(n) {
		long = append(long, Extent{4000000000 + i, 3000000000 + i, 1})
	}
	if _, err := NewNamespaceMap(GID, long[:n-1]); err != nil {
		t.Errorf("%d lines: %v", n-1, err)
	}
	_, err = NewNamespaceMap(GID, long)
	want := fmt.Sprintf("--gid-map: the map is %d bytes as gid_map text; the kernel takes less than a page (%d bytes)", 24*n, page)
	if err == nil || err.Error() != want {
		t.Errorf("%d lines: error %v, want %s", n, err, want)
	}
}
