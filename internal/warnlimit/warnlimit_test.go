package warnlimit

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var l Limiter
	now := time.Unix(1000, 0)
	for i := range Burst {
		if ok, _ := l.Allow(now); !ok {
			t.Fatalf("warning %d refused within the burst", i)
		}
	}
	for range 5 {
		if ok, _ := l.Allow(now.Add(500 * time.Millisecond)); ok {
			t.Fatal("warning allowed past the burst")
		}
	}
	ok, suppressed := l.Allow(now.Add(time.Second))
	if !ok || suppressed != 5 {
		t.Errorf("next window: allowed %v, suppressed %d, want true, 5", ok, suppressed)
	}
}
