package streamlimit_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/services/ingest/internal/streamlimit"
)

func newShared(t *testing.T, nc *nats.Conn, cfg streamlimit.Config, opts streamlimit.Options) *streamlimit.Limiter {
	t.Helper()
	l, err := streamlimit.NewShared(nc, nil, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// refusedOn reports whether l refuses a stream of device; one admitted is released at once.
func refusedOn(l *streamlimit.Limiter, device, tenant string) bool {
	release, err := l.Acquire(device, tenant)
	if err != nil {
		return true
	}
	release()
	return false
}

// TestLimitHoldsAcrossInstances: two limiters on one NATS, each on its own connection. A
// device holding its limit on A is refused on B once B has heard, and admitted again on B once
// A releases one; a tenant's Count on B includes A's streams; A's streams keep counting while
// A is alive and silent (the snapshots refresh them), and stop counting when A closes (at
// once) or dies (after the expiry).
func TestLimitHoldsAcrossInstances(t *testing.T) {
	t.Parallel()
	s := bustest.RunServer(t)
	cfg := streamlimit.Config{PerDevice: 2, PerTenant: 3}
	const snapshot, expiry = 100 * time.Millisecond, 500 * time.Millisecond
	opts := streamlimit.Options{Interval: 20 * time.Millisecond, SnapshotInterval: snapshot, Expiry: expiry}
	ncA, ncB := bustest.Connect(t, s), bustest.Connect(t, s)
	a := newShared(t, ncA, cfg, opts)
	b := newShared(t, ncB, cfg, opts)

	var releases []func()
	for range 2 {
		r, err := a.Acquire("d1", "t1")
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	bustest.Eventually(t, 5*time.Second, "B refusing d1 held at its limit on A", func() bool { return refusedOn(b, "d1", "t1") })
	bustest.Eventually(t, 5*time.Second, "B counting A's streams of t1", func() bool { return b.Count("t1") == 2 })
	rb, err := b.Acquire("d2", "t1") // the tenant's third stream
	if err != nil {
		t.Fatalf("a stream of another device of t1 on B: %v", err)
	}
	bustest.Eventually(t, 5*time.Second, "A refusing a 4th stream of t1", func() bool { return refusedOn(a, "d3", "t1") })
	rb()

	releases[0]()
	var held func()
	bustest.Eventually(t, 5*time.Second, "B admitting d1 after A released one", func() bool {
		r, err := b.Acquire("d1", "t1")
		if err == nil {
			held = r
		}
		return err == nil
	})
	if !refusedOn(b, "d1", "t1") {
		t.Fatal("B admitted a third stream of d1 (one on A, one on B)")
	}
	held()

	// Alive and without changes, A's remaining stream keeps counting past the expiry.
	bustest.Eventually(t, 5*time.Second, "B refusing d1's second stream", func() bool {
		r, err := b.Acquire("d1", "t1")
		if err != nil {
			return false
		}
		defer r()
		return refusedOn(b, "d1", "t1")
	})
	r2, err := a.Acquire("d1", "t1")
	if err != nil {
		t.Fatal(err)
	}
	releases[0] = r2
	bustest.Eventually(t, 5*time.Second, "B refusing d1 again", func() bool { return refusedOn(b, "d1", "t1") })
	until := time.Now().Add(3 * expiry)
	for time.Now().Before(until) {
		if !refusedOn(b, "d1", "t1") {
			t.Fatal("A's streams stopped counting on B while A is alive")
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}

	t.Run("an instance that closes", func(t *testing.T) {
		c := newShared(t, bustest.Connect(t, s), cfg, opts)
		if _, err := c.Acquire("d9", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Acquire("d9", ""); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, 5*time.Second, "B hearing C's streams", func() bool { return refusedOn(b, "d9", "") })
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		// The bye arrives long before the expiry would matter.
		bustest.Eventually(t, expiry/2, "B forgetting C's streams once C closed", func() bool { return !refusedOn(b, "d9", "") })
	})

	t.Run("an instance that dies", func(t *testing.T) {
		ncA.Close() // no bye, no more snapshots
		died := time.Now()
		if !refusedOn(b, "d1", "t1") && time.Since(died) < expiry/2 {
			t.Fatal("A's streams stopped counting on B right after A died")
		}
		bustest.Eventually(t, 5*time.Second, "B forgetting A's streams after the expiry", func() bool { return !refusedOn(b, "d1", "t1") })
		// A's last snapshot was heard at most a snapshot interval (plus scheduling) before.
		if since := time.Since(died); since < expiry/2 {
			t.Fatalf("A's streams stopped counting %s after A died, before the expiry (%s)", since, expiry)
		}
		if got := b.Count("t1"); got != 0 {
			t.Fatalf("B counts %d streams of t1 after A died", got)
		}
	})
}

// TestWithoutAConnection: NewShared without a connection is a limiter of this instance alone,
// and Close does nothing.
func TestWithoutAConnection(t *testing.T) {
	t.Parallel()
	l, err := streamlimit.NewShared(nil, nil, streamlimit.Config{PerDevice: 1}, streamlimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("d1", ""); err != nil {
		t.Fatal(err)
	}
	if !refusedOn(l, "d1", "") {
		t.Fatal("a second stream admitted")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
