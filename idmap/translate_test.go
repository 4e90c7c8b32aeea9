package idmap

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// probe is one lookup and its expected result.
type probe struct {
	id     uint32
	want   uint32
	forbid bool // guest to host only: the id is refused
}

func mustUIDs(t *testing.T, rules ...string) UIDMap {
	t.Helper()
	m, err := ParseUIDMap(rules)
	if err != nil {
		t.Fatalf("ParseUIDMap(%q): %v", rules, err)
	}
	return m
}

func checkUIDs(t *testing.T, m UIDMap, toHost, toGuest []probe) {
	t.Helper()
	for _, p := range toHost {
		got, err := m.ToHost(GuestUID(p.id))
		switch {
		case p.forbid:
			if err == nil || !errors.Is(err, syscall.EPERM) || got != HostUID(NoID) {
				t.Errorf("[%s] ToHost(%d) = %d, %v; want NoID and EPERM", m, p.id, got, err)
			}
		case err != nil || got != HostUID(p.want):
			t.Errorf("[%s] ToHost(%d) = %d, %v; want %d", m, p.id, got, err, p.want)
		}
	}
	for _, p := range toGuest {
		if got := m.ToGuest(HostUID(p.id)); got != GuestUID(p.want) {
			t.Errorf("[%s] ToGuest(%d) = %d, want %d", m, p.id, got, p.want)
		}
	}
}

func TestIdentity(t *testing.T) {
	for _, m := range []UIDMap{{}, mustUIDs(t)} {
		if !m.IsIdentity() || m.String() != "" || m.Rules() != nil {
			t.Errorf("identity map: IsIdentity %v, String %q, Rules %v", m.IsIdentity(), m, m.Rules())
		}
		checkUIDs(t, m,
			[]probe{{0, 0, false}, {1000, 1000, false}, {NoID, NoID, false}},
			[]probe{{0, 0, false}, {1000, 1000, false}, {NoID, NoID, false}})
	}
	var g GIDMap
	if h, err := g.ToHost(7); h != 7 || err != nil || g.ToGuest(9) != 9 || !g.IsIdentity() {
		t.Errorf("zero GIDMap is not the identity")
	}
}

func TestMapTypes(t *testing.T) {
	for _, tc := range []struct {
		rules           []string
		toHost, toGuest []probe
	}{
		{
			rules: []string{"guest:100:1000:10"},
			toHost: []probe{{0, 0, false}, {99, 99, false}, {100, 1000, false}, {105, 1005, false},
				{109, 1009, false}, {110, 110, false}, {NoID, NoID, false}},
			// Guest to host only: host ids are not translated back.
			toGuest: []probe{{1000, 1000, false}, {1009, 1009, false}, {100, 100, false}},
		},
		{
			rules:  []string{"host:1000:100:10"},
			toHost: []probe{{100, 100, false}, {1000, 1000, false}},
			toGuest: []probe{{999, 999, false}, {1000, 100, false}, {1009, 109, false},
				{1010, 1010, false}, {0, 0, false}},
		},
		{
			rules:   []string{"map:100:1000:10"},
			toHost:  []probe{{99, 99, false}, {100, 1000, false}, {109, 1009, false}, {110, 110, false}},
			toGuest: []probe{{999, 999, false}, {1000, 100, false}, {1009, 109, false}, {1010, 1010, false}},
		},
		{
			// A map may shift ids down as well as up, and its two ranges
			// may overlap each other.
			rules:   []string{"map:1000:995:10"},
			toHost:  []probe{{1000, 995, false}, {1009, 1004, false}, {1010, 1010, false}, {995, 995, false}},
			toGuest: []probe{{995, 1000, false}, {1004, 1009, false}, {1005, 1005, false}, {1009, 1009, false}},
		},
		{
			rules:   []string{"squash-guest:10:65534:5"},
			toHost:  []probe{{9, 9, false}, {10, 65534, false}, {14, 65534, false}, {15, 15, false}},
			toGuest: []probe{{65534, 65534, false}, {10, 10, false}},
		},
		{
			rules:   []string{"squash-host:10:65534:5"},
			toHost:  []probe{{10, 10, false}, {65534, 65534, false}},
			toGuest: []probe{{9, 9, false}, {10, 65534, false}, {14, 65534, false}, {15, 15, false}},
		},
		{
			rules:   []string{"forbid-guest:0:1000"},
			toHost:  []probe{{0, 0, true}, {999, 0, true}, {1000, 1000, false}, {NoID, NoID, false}},
			toGuest: []probe{{0, 0, false}, {999, 999, false}},
		},
		{
			// Ranges at the very top of the id space.
			rules:   []string{"map:4294967290:0:5", "squash-host:4294967290:7:5"},
			toHost:  []probe{{4294967289, 4294967289, false}, {4294967290, 0, false}, {4294967294, 4, false}, {NoID, NoID, false}},
			toGuest: []probe{{0, 4294967290, false}, {4, 4294967294, false}, {5, 5, false}, {4294967294, 7, false}, {NoID, NoID, false}},
		},
		{
			// virtiofsd's README example: any guest user creates files as
			// host 1001, which the guest sees as 1000.
			rules:   []string{"squash-guest:0:1001:4294967295", "host:1001:1000:1"},
			toHost:  []probe{{0, 1001, false}, {1000, 1001, false}, {4294967294, 1001, false}, {NoID, NoID, false}},
			toGuest: []probe{{1001, 1000, false}, {1000, 1000, false}, {0, 0, false}, {1002, 1002, false}},
		},
		{
			// Several rules in any order: the lookup does not depend on it.
			rules: []string{"guest:50:5000:10", "forbid-guest:0:10", "squash-guest:20:7:10", "map:100:1000:1", "host:5000:50:10"},
			toHost: []probe{{0, 0, true}, {9, 0, true}, {10, 10, false}, {19, 19, false}, {20, 7, false}, {29, 7, false},
				{30, 30, false}, {50, 5000, false}, {59, 5009, false}, {60, 60, false}, {100, 1000, false}, {101, 101, false}},
			toGuest: []probe{{5000, 50, false}, {5009, 59, false}, {5010, 5010, false}, {1000, 100, false}, {50, 50, false}},
		},
	} {
		m := mustUIDs(t, tc.rules...)
		checkUIDs(t, m, tc.toHost, tc.toGuest)

		// The same rules for GIDs behave the same.
		g, err := ParseGIDMap(tc.rules)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tc.toHost {
			got, err := g.ToHost(GuestGID(p.id))
			if (err != nil) != p.forbid || !p.forbid && got != HostGID(p.want) {
				t.Errorf("[%s] GID ToHost(%d) = %d, %v", g, p.id, got, err)
			}
		}
		for _, p := range tc.toGuest {
			if got := g.ToGuest(HostGID(p.id)); got != GuestGID(p.want) {
				t.Errorf("[%s] GID ToGuest(%d) = %d, want %d", g, p.id, got, p.want)
			}
		}
	}
}

func TestForbiddenError(t *testing.T) {
	m, err := ParseGIDMap([]string{"map:0:0:1", "FORBID-GUEST:100:900"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := m.ToHost(500)
	if id != HostGID(NoID) {
		t.Errorf("ToHost of a forbidden id returned %d, want NoID", id)
	}
	var fe *ForbiddenError
	if !errors.As(err, &fe) || fe.Index != 2 || fe.Rule != (Rule{RuleForbidGuest, 100, 0, 900}) || fe.Kind != GID {
		t.Fatalf("error %#v is not the ForbiddenError of rule #2", err)
	}
	const want = `guest GIDs 100-999 forbidden by --translate-gid rule #2 "FORBID-GUEST:100:900"`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) || errno != syscall.EPERM {
		t.Errorf("error %v does not carry EPERM", err)
	}
}

func TestParseMapErrors(t *testing.T) {
	for _, tc := range []struct {
		gid   bool
		rules []string
		want  string // the whole error
	}{
		{false, []string{"map:0:1000:10", "guest:5:0:10"},
			`--translate-uid rule #2 "guest:5:0:10": guest UIDs 5-14 overlap guest UIDs 0-9 of rule #1 "map:0:1000:10" (the source ranges of rules must not overlap)`},
		{false, []string{"map:0:1000:10", "host:1005:0:1"},
			`--translate-uid rule #2 "host:1005:0:1": host UID 1005 overlaps host UIDs 1000-1009 of rule #1 "map:0:1000:10" (the source ranges of rules must not overlap)`},
		{true, []string{"host:1000:0:10", "squash-host:0:0:1", "map:0:1009:1"},
			`--translate-gid rule #3 "map:0:1009:1": host GID 1009 overlaps host GIDs 1000-1009 of rule #1 "host:1000:0:10" (the source ranges of rules must not overlap)`},
		// The later rule's range ends inside an earlier one.
		{false, []string{"forbid-guest:10:10", "squash-guest:0:0:11"},
			`--translate-uid rule #2 "squash-guest:0:0:11": guest UIDs 0-10 overlap guest UIDs 10-19 of rule #1 "forbid-guest:10:10" (the source ranges of rules must not overlap)`},
		// ... or covers one entirely.
		{false, []string{"guest:5:0:1", "squash-guest:0:0:100"},
			`--translate-uid rule #2 "squash-guest:0:0:100": guest UIDs 0-99 overlap guest UID 5 of rule #1 "guest:5:0:1" (the source ranges of rules must not overlap)`},
		// Same start.
		{false, []string{"guest:7:0:1", "squash-guest:7:0:1"},
			`--translate-uid rule #2 "squash-guest:7:0:1": guest UID 7 overlaps guest UID 7 of rule #1 "guest:7:0:1" (the source ranges of rules must not overlap)`},
		// Between two earlier rules, overlapping both: the lower is named.
		{false, []string{"guest:0:0:5", "guest:10:0:5", "guest:3:100:10"},
			`--translate-uid rule #3 "guest:3:100:10": guest UIDs 3-12 overlap guest UIDs 0-4 of rule #1 "guest:0:0:5" (the source ranges of rules must not overlap)`},
		{false, []string{"map:0:0:1", "bogus"},
			`--translate-uid rule #2 "bogus": no separator after the type "bogus": want TYPE:FROM:TO:COUNT, e.g. map:0:1000:1`},
		{true, []string{"map:0:0:0"},
			`--translate-gid rule #1 "map:0:0:0": COUNT is 0: a rule covers at least one id`},
		{false, []string{"guest:1:2:3", "Guest/1/2/4294967295"},
			`--translate-uid rule #2 "Guest/1/2/4294967295": source range 1+4294967295 ends at 4294967295, past 4294967294, the largest id a rule may name`},
	} {
		var err error
		if tc.gid {
			_, err = ParseGIDMap(tc.rules)
		} else {
			_, err = ParseUIDMap(tc.rules)
		}
		if err == nil || err.Error() != tc.want {
			t.Errorf("rules %q: error\n\t%v\nwant\n\t%s", tc.rules, err, tc.want)
			continue
		}
		var re *RuleError
		if !errors.As(err, &re) || re.Text != tc.rules[re.Index-1] {
			t.Errorf("rules %q: error %#v is not a RuleError naming its rule", tc.rules, err)
		}
	}

	// Rules of different directions never overlap.
	for _, rules := range [][]string{
		{"guest:0:1000:10", "host:0:1000:10"},
		{"squash-guest:0:0:100", "squash-host:0:0:100"},
		{"forbid-guest:0:100", "host:0:0:100"},
		{"map:0:5:10", "map:10:15:10"},
		{"guest:0:0:10", "guest:10:0:10", "guest:20:0:10"},
	} {
		if _, err := ParseUIDMap(rules); err != nil {
			t.Errorf("rules %q: %v", rules, err)
		}
	}

	// Rules made in code are checked the same way, named by their
	// canonical text.
	_, err := NewUIDMap([]Rule{{RuleMap, 0, 0, 10}, {RuleSquashHost, 9, 0, 1}})
	const want = `--translate-uid rule #2 "squash-host:9:0:1": host UID 9 overlaps host UIDs 0-9 of rule #1 "map:0:0:10" (the source ranges of rules must not overlap)`
	if err == nil || err.Error() != want {
		t.Errorf("NewUIDMap error %v, want %s", err, want)
	}
	if _, err := NewGIDMap([]Rule{{Type: RuleForbidGuest, From: 1, To: 1, Count: 1}}); err == nil ||
		!strings.Contains(err.Error(), `--translate-gid rule #1 "forbid-guest:1:1": forbid-guest takes no target id`) {
		t.Errorf("NewGIDMap error %v", err)
	}
}

// sameTable reports whether two tables translate alike: the same rules and
// the same entries (their error pointers aside).
func sameTable(a, b *table) bool {
	if a == nil || b == nil {
		return a == b
	}
	eq := func(x, y entry) bool {
		return x.first == y.first && x.last == y.last && x.target == y.target && x.op == y.op && x.rule == y.rule &&
			(x.err == nil) == (y.err == nil) && (x.err == nil || x.err.Rule == y.err.Rule && x.err.Index == y.err.Index)
	}
	return a.kind == b.kind && slices.Equal(a.rules, b.rules) &&
		slices.EqualFunc(a.g2h, b.g2h, eq) && slices.EqualFunc(a.h2g, b.h2g, eq)
}

func TestRoundTrip(t *testing.T) {
	for _, rules := range [][]string{
		nil,
		{"map:0:1000:1"},
		{"MAP/0/1000/1", "squash-guest,1,65534,4294967294"},
		{"guest:50:5000:10", "forbid-guest:0:10", "squash-guest:20:7:10", "map:100:1000:1", "host:5000:50:+010", "squash-host:0:65534:50"},
	} {
		m := mustUIDs(t, rules...)
		again := mustUIDs(t, strings.Fields(m.String())...)
		if !sameTable(m.t, again.t) {
			t.Errorf("%q: parse -> String -> parse gives %q, a different map", rules, again)
		}
		if again.String() != m.String() {
			t.Errorf("%q: String %q then %q", rules, m, again)
		}
		built, err := NewUIDMap(m.Rules())
		if err != nil || !sameTable(m.t, built.t) {
			t.Errorf("%q: NewUIDMap(Rules()) = %v, %v", rules, built, err)
		}
		g, err := ParseGIDMap(strings.Fields(m.String()))
		if err != nil || g.String() != m.String() || !slices.Equal(g.Rules(), m.Rules()) {
			t.Errorf("%q: as GIDs: %v, %v", rules, g, err)
		}
	}
}

// oracle translates by scanning the rules, as their definitions read.
func oracleToHost(rules []Rule, id uint32) (uint32, bool) {
	for _, r := range rules {
		if !r.Type.fromGuest() || id < r.From || id > r.last() {
			continue
		}
		switch r.Type {
		case RuleGuest, RuleMap:
			return r.To + (id - r.From), true
		case RuleSquashGuest:
			return r.To, true
		case RuleForbidGuest:
			return NoID, false
		}
	}
	return id, true
}

func oracleToGuest(rules []Rule, id uint32) uint32 {
	for _, r := range rules {
		switch r.Type {
		case RuleHost, RuleSquashHost:
			if id >= r.From && id <= r.last() {
				if r.Type == RuleSquashHost {
					return r.To
				}
				return r.To + (id - r.From)
			}
		case RuleMap:
			if id >= r.To && id <= r.To+(r.Count-1) {
				return r.From + (id - r.To)
			}
		}
	}
	return id
}

// probes returns the ids around every range boundary of rules.
func probes(rules []Rule) []uint32 {
	ids := []uint32{0, 1, MaxID, NoID}
	for _, r := range rules {
		for _, base := range []uint32{r.From, r.last(), r.To, r.To + (r.Count - 1)} {
			ids = append(ids, base-1, base, base+1)
		}
	}
	return ids
}

// checkOracle compares m with the oracle at the boundaries of its rules
// and at extra ids.
func checkOracle(t *testing.T, m UIDMap, extra ...uint32) {
	t.Helper()
	rules := m.Rules()
	for _, id := range append(probes(rules), extra...) {
		want, ok := oracleToHost(rules, id)
		got, err := m.ToHost(GuestUID(id))
		if got != HostUID(want) || (err == nil) != ok {
			t.Fatalf("[%s] ToHost(%d) = %d, %v; oracle says %d, %v", m, id, got, err, want, ok)
		}
		if got, want := m.ToGuest(HostUID(id)), oracleToGuest(rules, id); got != GuestUID(want) {
			t.Fatalf("[%s] ToGuest(%d) = %d; oracle says %d", m, id, got, want)
		}
	}
}

// TestRandomMaps checks the binary search against the oracle on random
// rule sets, with ranges small and clustered so that they often abut and
// often overlap (and are then refused).
func TestRandomMaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	built := 0
	for range 2000 {
		n := 1 + rng.IntN(12)
		var rules []Rule
		for range n {
			r := Rule{Type: RuleType(1 + rng.IntN(6)), From: rng.Uint32N(200), To: rng.Uint32N(200), Count: 1 + rng.Uint32N(20)}
			if r.Type == RuleForbidGuest {
				r.To = 0
			}
			rules = append(rules, r)
		}
		m, err := NewUIDMap(rules)
		if err != nil {
			var re *RuleError
			if !errors.As(err, &re) || re.Index < 1 || re.Index > n || !strings.Contains(err.Error(), "overlap") {
				t.Fatalf("rules %v: unexpected error %v", rules, err)
			}
			// Every rule before the refused one builds.
			if _, err := NewUIDMap(rules[:re.Index-1]); err != nil {
				t.Fatalf("rules %v: refused at #%d, but the rules before it fail too: %v", rules, re.Index, err)
			}
			continue
		}
		built++
		var extra []uint32
		for range 50 {
			extra = append(extra, rng.Uint32N(260))
		}
		checkOracle(t, m, extra...)
	}
	if built < 200 {
		t.Errorf("only %d of 2000 random rule sets built", built)
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	m := mustUIDs(t, "map:0:100000:65536", "forbid-guest:70000:10", "squash-host:200000:65534:100")
	var sink uint32
	allocs := testing.AllocsPerRun(100, func() {
		for _, id := range []GuestUID{5, 65536, 70005, NoID} {
			h, err := m.ToHost(id)
			if err != nil {
				sink++
			}
			sink += uint32(h)
		}
		sink += uint32(m.ToGuest(100005)) + uint32(m.ToGuest(200050)) + uint32(m.ToGuest(7))
	})
	if allocs != 0 {
		t.Errorf("lookups allocate %v times per run", allocs)
	}
	_ = sink
}
