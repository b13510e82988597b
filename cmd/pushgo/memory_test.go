package main

import (
	"testing"
	"time"
)

// TestMemoryReleaseOnlyWhenIdle walks the release policy through a load, a pause with a burst,
// a longer idle period and two more loads. Readings come every 5 s.
func TestMemoryReleaseOnlyWhenIdle(t *testing.T) {
	t.Parallel()
	const tick = 5 * time.Second
	const busy, quiet = 100 << 20, 1 << 20 // bytes allocated per tick
	steps := []struct {
		at    int // seconds
		alloc uint64
		free  uint64
		want  bool
	}{
		{0, busy, 500 << 20, false},   // first reading
		{5, busy, 500 << 20, false},   // under load, much free: no release
		{10, quiet, 500 << 20, false}, // idle from here
		{15, quiet, 500 << 20, false},
		{35, quiet, 500 << 20, false}, // idle 25 s
		{40, quiet, 500 << 20, true},  // idle 30 s: release
		{45, quiet, 100 << 20, false}, // released once in this pause
		{50, quiet, 300 << 20, true},  // much more became free
		{55, quiet, 10 << 20, false},  // little free
		{100, busy, 10 << 20, false},  // one burst (the broker's state snapshot) is not load
		{155, quiet, 10 << 20, false}, // idle 2m25s
		{160, quiet, 0, true},         // idle 2m30s: the broker's windows have expired; collect and release
		{165, quiet, 10 << 20, false}, // both fixed releases done
		{300, quiet, 10 << 20, false},
		{305, busy, 100 << 20, false}, // load again: two busy readings in a row
		{310, busy, 100 << 20, false},
		{315, quiet, 100 << 20, false}, // idle again
		{340, quiet, 100 << 20, false}, // idle 25 s
		{345, quiet, 100 << 20, true},  // idle 30 s: a new pause releases again
		{350, busy, 100 << 20, false},  // load again
		{355, busy, 100 << 20, false},
		{360, quiet, 10 << 20, false}, // idle again
		{390, quiet, 10 << 20, false}, // idle 30 s, but too little free to release
		{510, quiet, 10 << 20, true},  // idle 2m30s: the second release does not depend on it
	}
	var s memoryState
	var allocs uint64
	for i, st := range steps {
		allocs += st.alloc
		if got := s.observe(time.Unix(int64(st.at), 0), allocs, st.free, tick); got != st.want {
			t.Fatalf("step %d (t=%ds): release = %v, want %v", i, st.at, got, st.want)
		}
	}
}
