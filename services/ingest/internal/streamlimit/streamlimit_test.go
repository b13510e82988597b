package streamlimit

import (
	"testing"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

func TestAcquire(t *testing.T) {
	t.Parallel()
	type open struct{ device, tenant string }
	tests := []struct {
		name   string
		cfg    Config
		opened []open // admitted in this order before the last one is tried
		try    open
		want   string // "" admitted, else the error code
	}{
		{"under the device limit", Config{PerDevice: 2}, []open{{"d1", ""}}, open{"d1", ""}, ""},
		{"at the device limit", Config{PerDevice: 2}, []open{{"d1", ""}, {"d1", ""}}, open{"d1", ""}, "too_many_streams"},
		{"another device is not counted", Config{PerDevice: 2}, []open{{"d1", ""}, {"d1", ""}}, open{"d2", ""}, ""},
		{"device limit off", Config{}, []open{{"d1", ""}, {"d1", ""}, {"d1", ""}}, open{"d1", ""}, ""},
		{"at the tenant limit", Config{PerDevice: 8, PerTenant: 2}, []open{{"d1", "t1"}, {"d2", "t1"}}, open{"d3", "t1"}, "too_many_streams"},
		{"another tenant is not counted", Config{PerTenant: 2}, []open{{"d1", "t1"}, {"d2", "t1"}}, open{"d3", "t2"}, ""},
		{"no tenant, no tenant limit", Config{PerTenant: 1}, []open{{"d1", ""}, {"d2", ""}}, open{"d3", ""}, ""},
		{"a tenant's own limit wins", Config{PerTenant: 1, TenantLimit: func(id string) (int, bool) { return 3, id == "big" }},
			[]open{{"d1", "big"}, {"d2", "big"}}, open{"d3", "big"}, ""},
		{"a tenant's own limit refuses", Config{PerTenant: 10, TenantLimit: func(string) (int, bool) { return 2, true }},
			[]open{{"d1", "t1"}, {"d2", "t1"}}, open{"d3", "t1"}, "too_many_streams"},
		{"a tenant's own 0 is no limit", Config{PerTenant: 1, TenantLimit: func(string) (int, bool) { return 0, true }},
			[]open{{"d1", "t1"}, {"d2", "t1"}}, open{"d3", "t1"}, ""},
		{"the device limit applies within a tenant", Config{PerDevice: 1, PerTenant: 10}, []open{{"d1", "t1"}}, open{"d1", "t1"}, "too_many_streams"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := New(tc.cfg)
			for _, o := range tc.opened {
				if _, err := l.Acquire(o.device, o.tenant); err != nil {
					t.Fatalf("Acquire(%v) before the tried one: %v", o, err)
				}
			}
			release, err := l.Acquire(tc.try.device, tc.try.tenant)
			got := ""
			if err != nil {
				e, ok := apierr.As(err)
				if !ok {
					t.Fatalf("error %v is not an API error", err)
				}
				if e.HTTPStatus() != 429 {
					t.Fatalf("status %d, want 429", e.HTTPStatus())
				}
				got = e.Code
			} else if release == nil {
				t.Fatal("admitted without a release")
			}
			if got != tc.want {
				t.Fatalf("Acquire(%v) = %q, want %q", tc.try, got, tc.want)
			}
		})
	}
}

// TestReleaseFreesTheSlot: a released stream makes room, twice releasing counts once, and
// Count follows the open streams of a tenant.
func TestReleaseFreesTheSlot(t *testing.T) {
	t.Parallel()
	l := New(Config{PerDevice: 2, PerTenant: 3})
	r1, err := l.Acquire("d1", "t1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Acquire("d1", "t1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("d1", "t1"); err == nil {
		t.Fatal("a third stream of d1 was admitted")
	}
	if got := l.Count("t1"); got != 2 {
		t.Fatalf("Count(t1) = %d, want 2", got)
	}
	r1()
	r1() // a second release of the same stream does nothing
	if got := l.Count("t1"); got != 1 {
		t.Fatalf("Count(t1) after a release (twice) = %d, want 1", got)
	}
	r3, err := l.Acquire("d1", "t1")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := l.Acquire("d1", "t1"); err == nil {
		t.Fatal("the twice-released slot was counted twice")
	}
	r2()
	r3()
	if got := l.Count("t1"); got != 0 {
		t.Fatalf("Count(t1) after every release = %d, want 0", got)
	}
	if len(l.local) != 0 || l.noTenant != 0 {
		t.Fatalf("counters left behind: %v %d", l.local, l.noTenant)
	}
}
