package ratelimit_test

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/services/ingest/internal/ratelimit"
)

// TestLimitHoldsAcrossInstances: two limiters on one NATS, each offered far more than the
// limit for one key, together admit what one bucket would over the window (rate·window +
// burst) within ±20 %. Two limiters that do not share (what a per-process limiter is) admit
// twice that, which the same bound refuses: the second subtest shows the check can fail.
func TestLimitHoldsAcrossInstances(t *testing.T) {
	t.Parallel()
	const rate, burst = 40.0, 80.0
	const window = 3 * time.Second
	s := bustest.RunServer(t)

	// run offers the key to both limiters every 2 ms each for the window and returns what they
	// admitted together and the expected count of one bucket over the time it really took.
	run := func(t *testing.T, conns [2]*nats.Conn) (admitted int, expected float64) {
		t.Helper()
		var lims [2]*ratelimit.Limiter
		for i, nc := range conns {
			l, err := ratelimit.New(nc, nil, ratelimit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			if nc != nil {
				if err := nc.Flush(); err != nil { // the subscription is registered
					t.Fatal(err)
				}
			}
			lims[i] = l
		}
		var mu sync.Mutex
		var last time.Time
		var wg sync.WaitGroup
		start := time.Now()
		for _, l := range lims {
			wg.Go(func() {
				tick := time.NewTicker(2 * time.Millisecond)
				defer tick.Stop()
				n := 0
				var at time.Time // of the last attempt
				for now := time.Now(); now.Sub(start) < window; now = time.Now() {
					at = now
					if ok, _ := l.Allow("ops.ch.K", rate, burst); ok {
						n++
					}
					select {
					case <-tick.C:
					case <-t.Context().Done():
						return
					}
				}
				mu.Lock()
				defer mu.Unlock()
				admitted += n
				if at.After(last) {
					last = at
				}
			})
		}
		wg.Wait()
		return admitted, rate*last.Sub(start).Seconds() + burst
	}

	t.Run("shared", func(t *testing.T) {
		t.Parallel()
		got, want := run(t, [2]*nats.Conn{bustest.Connect(t, s), bustest.Connect(t, s)})
		t.Logf("two sharing instances admitted %d, one bucket %.0f", got, want)
		if f := float64(got); f < 0.8*want || f > 1.2*want {
			t.Fatalf("two instances admitted %d; one bucket over the window admits %.0f (±20 %%)", got, want)
		}
	})
	t.Run("per process, for contrast", func(t *testing.T) {
		t.Parallel()
		got, want := run(t, [2]*nats.Conn{nil, nil})
		t.Logf("two local instances admitted %d, one bucket %.0f", got, want)
		if f := float64(got); f <= 1.2*want {
			t.Fatalf("two unshared instances admitted %d, within the bound of %.0f: the shared test would not notice a limiter that does not share", got, want)
		}
	})
}
