package idmap

import (
	"fmt"
	"testing"
)

var (
	sinkHost  HostUID
	sinkGuest GuestUID
	sinkErr   error
)

// benchMap returns a map of n map rules, each of 100 ids, 1000 apart.
func benchMap(b *testing.B, n int) UIDMap {
	if n == 0 {
		return UIDMap{}
	}
	rules := make([]Rule, n)
	for i := range rules {
		rules[i] = Rule{Type: RuleMap, From: uint32(i) * 1000, To: 100000 + uint32(i)*1000, Count: 100}
	}
	m, err := NewUIDMap(rules)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkToHost looks up ids that hit a rule (id 50 of each block) and
// ids that fall between rules (id 500 of each block), spread over all
// rules.
func BenchmarkToHost(b *testing.B) {
	for _, n := range []int{0, 1, 16, 1024} {
		for _, hit := range []bool{true, false} {
			b.Run(fmt.Sprintf("rules=%d/hit=%v", n, hit), func(b *testing.B) {
				m := benchMap(b, n)
				blocks := uint32(max(n, 1))
				off := uint32(50)
				if !hit {
					off = 500
				}
				b.ReportAllocs()
				var i uint32
				for b.Loop() {
					sinkHost, sinkErr = m.ToHost(GuestUID((i%blocks)*1000 + off))
					i += 7
				}
			})
		}
	}
}

func BenchmarkToGuest(b *testing.B) {
	for _, n := range []int{0, 1, 16, 1024} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			m := benchMap(b, n)
			blocks := uint32(max(n, 1))
			b.ReportAllocs()
			var i uint32
			for b.Loop() {
				sinkGuest = m.ToGuest(HostUID(100000 + (i%blocks)*1000 + 50))
				i += 7
			}
		})
	}
}

// BenchmarkForbidden looks up an id a forbid-guest rule refuses.
func BenchmarkForbidden(b *testing.B) {
	m, err := ParseUIDMap([]string{"map:1000:1000:1", "forbid-guest:0:1000"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkHost, sinkErr = m.ToHost(500)
	}
	if sinkErr == nil {
		b.Fatal("not refused")
	}
}
