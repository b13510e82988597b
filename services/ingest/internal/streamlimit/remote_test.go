package streamlimit

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for the expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var peerA, peerB = instanceID{0xa}, instanceID{0xb}

// hear makes l receive an announcement of counts from peer.
func hear(t *testing.T, l *Limiter, peer instanceID, recs ...record) {
	t.Helper()
	for _, m := range encode(peer, recs, DefaultMaxMessageBytes) {
		if err := l.receive(m); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRemoteCountsAddToLocal: a device or tenant is refused when its streams here plus those
// the other instances announced reach the limit.
func TestRemoteCountsAddToLocal(t *testing.T) {
	t.Parallel()
	type open struct{ device, tenant string }
	tests := []struct {
		name   string
		cfg    Config
		opened []open // here
		heard  map[instanceID][]record
		try    open
		admit  bool
	}{
		{"remote alone under the limit", Config{PerDevice: 2}, nil,
			map[instanceID][]record{peerA: {{"d.d1", 1}}}, open{"d1", ""}, true},
		{"remote alone at the limit", Config{PerDevice: 2}, nil,
			map[instanceID][]record{peerA: {{"d.d1", 2}}}, open{"d1", ""}, false},
		{"local plus remote at the limit", Config{PerDevice: 2}, []open{{"d1", ""}},
			map[instanceID][]record{peerA: {{"d.d1", 1}}}, open{"d1", ""}, false},
		{"two remotes add up", Config{PerDevice: 3}, nil,
			map[instanceID][]record{peerA: {{"d.d1", 1}}, peerB: {{"d.d1", 2}}}, open{"d1", ""}, false},
		{"another device's count is not this one's", Config{PerDevice: 2}, []open{{"d1", ""}},
			map[instanceID][]record{peerA: {{"d.d2", 5}}}, open{"d1", ""}, true},
		{"a tenant key is not a device key", Config{PerDevice: 2}, nil,
			map[instanceID][]record{peerA: {{"t.d1", 5}}}, open{"d1", ""}, true},
		{"tenant: local plus remotes at the limit", Config{PerTenant: 4}, []open{{"d1", "t1"}},
			map[instanceID][]record{peerA: {{"t.t1", 2}}, peerB: {{"t.t1", 1}}}, open{"d9", "t1"}, false},
		{"tenant: under the limit", Config{PerTenant: 4}, []open{{"d1", "t1"}},
			map[instanceID][]record{peerA: {{"t.t1", 2}}}, open{"d9", "t1"}, true},
		{"tenant: a tenant's own limit applies to the sum", Config{PerTenant: 100, TenantLimit: func(string) (int, bool) { return 2, true }},
			nil, map[instanceID][]record{peerA: {{"t.t1", 2}}}, open{"d9", "t1"}, false},
		{"no tenant: no tenant limit", Config{PerTenant: 1}, []open{{"d1", ""}},
			map[instanceID][]record{peerA: {{"t.t1", 5}}}, open{"d2", ""}, true},
		{"limits off", Config{}, nil,
			map[instanceID][]record{peerA: {{"d.d1", 50}, {"t.t1", 50}}}, open{"d1", "t1"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLimiter(tc.cfg, nil, Options{})
			for _, o := range tc.opened {
				if _, err := l.Acquire(o.device, o.tenant); err != nil {
					t.Fatalf("Acquire(%v) here: %v", o, err)
				}
			}
			for peer, recs := range tc.heard {
				hear(t, l, peer, recs...)
			}
			_, err := l.Acquire(tc.try.device, tc.try.tenant)
			if got := err == nil; got != tc.admit {
				t.Fatalf("Acquire(%v) admitted %v (%v), want %v", tc.try, got, err, tc.admit)
			}
		})
	}
}

// TestCountIsClusterWide: a tenant's Count is its streams here plus those announced.
func TestCountIsClusterWide(t *testing.T) {
	t.Parallel()
	l := newLimiter(Config{}, nil, Options{})
	for _, d := range []string{"d1", "d2"} {
		if _, err := l.Acquire(d, "t1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Acquire("d3", ""); err != nil {
		t.Fatal(err)
	}
	hear(t, l, peerA, record{"t.t1", 3}, record{"t.t2", 1})
	hear(t, l, peerB, record{"t.t1", 4})
	for tenant, want := range map[string]int{"t1": 2 + 3 + 4, "t2": 1, "t3": 0, "": 1} {
		if got := l.Count(tenant); got != want {
			t.Errorf("Count(%q) = %d, want %d", tenant, got, want)
		}
	}
}

// TestLaterCountReplaces: counts are gauges: a later one replaces the earlier, and a 0
// deletes the entry.
func TestLaterCountReplaces(t *testing.T) {
	t.Parallel()
	l := newLimiter(Config{PerDevice: 2}, nil, Options{})
	hear(t, l, peerA, record{"d.d1", 2}, record{"d.d2", 1})
	if _, err := l.Acquire("d1", ""); err == nil {
		t.Fatal("admitted with 2 streams announced elsewhere")
	}
	hear(t, l, peerA, record{"d.d1", 1})
	release, err := l.Acquire("d1", "")
	if err != nil {
		t.Fatalf("after the count went down to 1: %v", err)
	}
	release()
	hear(t, l, peerA, record{"d.d1", 0})
	if got := l.remote.n; got != 1 {
		t.Fatalf("%d entries after a 0, want 1 (d2's)", got)
	}
	hear(t, l, peerA, record{"d.d2", 0})
	if l.remote.n != 0 || len(l.remote.by) != 0 {
		t.Fatalf("entries left after every count went to 0: %d %v", l.remote.n, l.remote.by)
	}
	hear(t, l, peerB, record{"d.d3", 0}) // a 0 for an unknown key is nothing
	if l.remote.n != 0 || len(l.remote.by) != 0 {
		t.Fatalf("a 0 made an entry: %v", l.remote.by)
	}
}

// TestSilentInstanceExpires: an instance's counts stop counting once not heard for Expiry,
// each key on its own; a sweep then removes them.
func TestSilentInstanceExpires(t *testing.T) {
	t.Parallel()
	c := newClock()
	const expiry = 15 * time.Second
	l := newLimiter(Config{PerDevice: 1}, nil, Options{SnapshotInterval: 5 * time.Second, Now: c.now})
	if l.remote.expiry != expiry {
		t.Fatalf("default expiry %s, want %s", l.remote.expiry, expiry)
	}
	refused := func(device string) bool {
		release, err := l.Acquire(device, "")
		if err == nil {
			release()
		}
		return err != nil
	}
	hear(t, l, peerA, record{"d.d1", 1}, record{"d.d2", 1})
	c.advance(10 * time.Second)
	hear(t, l, peerA, record{"d.d2", 1}) // d2 heard again, d1 not
	c.advance(expiry - 10*time.Second - time.Nanosecond)
	if !refused("d1") || !refused("d2") {
		t.Fatal("a count stopped counting before its expiry")
	}
	c.advance(time.Nanosecond)
	if refused("d1") {
		t.Fatal("d1, not heard for the expiry, still counts")
	}
	if !refused("d2") {
		t.Fatal("d2, heard 5 s ago, no longer counts")
	}
	l.sweep()
	if l.remote.n != 1 {
		t.Fatalf("%d entries after a sweep, want 1", l.remote.n)
	}
	c.advance(10 * time.Second)
	if refused("d2") {
		t.Fatal("d2 still counts after its expiry")
	}
	l.sweep()
	if l.remote.n != 0 || len(l.remote.by) != 0 {
		t.Fatalf("entries left after every one expired: %v", l.remote.by)
	}
}

// TestByeForgetsTheInstance: a bye removes the sender's counts, not the others'; the
// limiter's own announcements are ignored.
func TestByeForgetsTheInstance(t *testing.T) {
	t.Parallel()
	l := newLimiter(Config{}, nil, Options{})
	l.id = instanceID{0xee}
	hear(t, l, peerA, record{"t.t1", 2})
	hear(t, l, peerB, record{"t.t1", 3})
	hear(t, l, l.id, record{"t.t1", 100})
	if got := l.Count("t1"); got != 5 {
		t.Fatalf("Count = %d, want 5 (its own announcement ignored)", got)
	}
	if err := l.receive(encodeSignal(kindBye, peerA)); err != nil {
		t.Fatal(err)
	}
	if got := l.Count("t1"); got != 3 || l.remote.n != 1 {
		t.Fatalf("after A's bye: Count = %d with %d entries, want 3 with 1", got, l.remote.n)
	}
	if err := l.receive(encodeSignal(kindHello, peerB)); err != nil {
		t.Fatal(err)
	}
	if !l.wantSnapshot.Load() {
		t.Fatal("a hello did not ask for a snapshot")
	}
}

// TestRemoteTableIsCapped: past MaxRemote entries a new one is dropped (lenient) and
// reported; known entries are still updated; a 0 or a sweep makes room again.
func TestRemoteTableIsCapped(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := newLimiter(Config{PerDevice: 1}, nil, Options{MaxRemote: 3, Now: c.now})
	hear(t, l, peerA, record{"d.d1", 1}, record{"d.d2", 1})
	hear(t, l, peerB, record{"d.d3", 1}, record{"d.d4", 1}, record{"d.d1", 1})
	if l.remote.n != 3 || l.remote.dropped != 2 {
		t.Fatalf("%d entries, %d dropped; want 3 and 2", l.remote.n, l.remote.dropped)
	}
	if _, err := l.Acquire("d4", ""); err != nil {
		t.Fatalf("d4, dropped, counts: %v", err)
	}
	hear(t, l, peerA, record{"d.d1", 5}) // known: updated while full
	if got := l.remote.by[peerA]["d.d1"].count; got != 5 {
		t.Fatalf("a known entry was not updated while full: %d", got)
	}
	hear(t, l, peerA, record{"d.d2", 0}, record{"d.d5", 1}) // the 0 makes room
	if _, err := l.Acquire("d5", ""); err == nil {
		t.Fatal("d5, announced once there was room, does not count")
	}
	l.sweep()
	if l.remote.dropped != 0 {
		t.Fatal("the sweep did not reset the dropped count")
	}
	c.advance(time.Hour)
	l.sweep()
	if l.remote.n != 0 {
		t.Fatalf("%d entries after all expired", l.remote.n)
	}
	hear(t, l, peerB, record{"d.d6", 1})
	if l.remote.n != 1 {
		t.Fatal("no room after the sweep")
	}
}

// TestPendingIsAbsolute: the changes announce each changed key's count now (0 for none, and a
// key opened and closed between two announcements too); a snapshot announces every nonzero
// count as well; keys are namespaced and devices without a tenant have no tenant key.
func TestPendingIsAbsolute(t *testing.T) {
	t.Parallel()
	l := newLimiter(Config{}, nil, Options{})
	l.sharing = true
	asMap := func(recs []record) map[string]int {
		m := map[string]int{}
		for _, r := range recs {
			if _, dup := m[r.key]; dup {
				t.Fatalf("key %s twice in %v", r.key, recs)
			}
			m[r.key] = r.count
		}
		return m
	}
	r1, _ := l.Acquire("d1", "t1")
	_, _ = l.Acquire("d1", "t1")
	_, _ = l.Acquire("d2", "")
	r3, _ := l.Acquire("d3", "t1")
	r3()
	if got, want := asMap(l.pending(false)), map[string]int{"d.d1": 2, "t.t1": 2, "d.d2": 1, "d.d3": 0}; !maps.Equal(got, want) {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	if got := l.pending(false); len(got) != 0 {
		t.Fatalf("changes again = %v, want none", got)
	}
	r1()
	if got, want := asMap(l.pending(false)), map[string]int{"d.d1": 1, "t.t1": 1}; !maps.Equal(got, want) {
		t.Fatalf("changes after a release = %v, want %v", got, want)
	}
	r4, _ := l.Acquire("d4", "t2")
	r4()
	if got, want := asMap(l.pending(true)), map[string]int{"d.d1": 1, "t.t1": 1, "d.d2": 1, "d.d4": 0, "t.t2": 0}; !maps.Equal(got, want) {
		t.Fatalf("snapshot = %v, want %v", got, want)
	}
	if got, want := asMap(l.pending(true)), map[string]int{"d.d1": 1, "t.t1": 1, "d.d2": 1}; !maps.Equal(got, want) {
		t.Fatalf("snapshot again = %v, want %v", got, want)
	}
}

// TestLongKeysAreHashed: a key longer than MaxKeyLen is announced as its namespace and hash,
// which the decoder accepts.
func TestLongKeysAreHashed(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 500)
	keys := []string{deviceCountKey(long), tenantCountKey(long), deviceCountKey("short")}
	for _, k := range keys {
		if !validKey(k) {
			t.Fatalf("key %q (%d bytes) would be refused", k, len(k))
		}
	}
	if keys[0] != deviceCountKey(long) || keys[0] == deviceCountKey(long+"y") || !strings.HasPrefix(keys[0], "d.#") {
		t.Fatalf("hashed key %q", keys[0])
	}
	if slices.Contains(keys, "d."+long) {
		t.Fatal("a long key kept as given")
	}
}
