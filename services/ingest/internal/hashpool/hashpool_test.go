package hashpool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hold takes n slots of p until the returned release is called.
func hold(t *testing.T, p *Pool, n int) (release func()) {
	t.Helper()
	stop := make(chan struct{})
	var started, done sync.WaitGroup
	for range n {
		started.Add(1)
		done.Go(func() {
			if err := p.Do(t.Context(), func() { started.Done(); <-stop }); err != nil {
				t.Error(err)
				started.Done()
			}
		})
	}
	started.Wait()
	var once sync.Once
	release = func() { once.Do(func() { close(stop); done.Wait() }) }
	t.Cleanup(release)
	return release
}

func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	const wait = 100 * time.Millisecond
	tests := []struct {
		name    string
		size    int
		held    int  // slots taken before the call
		release bool // release the held slots while the call waits
		cancel  bool // the caller's context is already done
		wantErr error
		wantRan bool
		minWait time.Duration // the call took at least this long
	}{
		{"free slot runs at once", 2, 1, false, false, nil, true, 0},
		{"all busy until the wait ends: busy", 2, 2, false, false, ErrBusy, false, wait},
		{"a slot freed while waiting is taken", 1, 1, true, false, nil, true, 0},
		{"caller gone while waiting", 1, 1, false, true, context.Canceled, false, 0},
		{"off: size 0 never waits", 0, 0, false, false, nil, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := New(tt.size, wait)
			release := func() {}
			if tt.held > 0 {
				release = hold(t, p, tt.held)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			if tt.release {
				go release()
			}
			ran := false
			start := time.Now()
			err := p.Do(ctx, func() { ran = true })
			took := time.Since(start)
			if !errors.Is(err, tt.wantErr) || ran != tt.wantRan {
				t.Fatalf("got %v ran=%v, want %v ran=%v", err, ran, tt.wantErr, tt.wantRan)
			}
			if took < tt.minWait {
				t.Fatalf("returned after %s, before the wait of %s", took, tt.minWait)
			}
			if errors.Is(tt.wantErr, ErrBusy) && took > wait+2*time.Second {
				t.Fatalf("busy only after %s: the wait is %s", took, wait)
			}
		})
	}
}

func TestAtMostSizeAtOnce(t *testing.T) {
	t.Parallel()
	p := New(3, 10*time.Second)
	var now, peak, runs atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			err := p.Do(t.Context(), func() {
				n := now.Add(1)
				for {
					m := peak.Load()
					if n <= m || peak.CompareAndSwap(m, n) {
						break
					}
				}
				runs.Add(1)
				for range 1000 { // some work, so that callers overlap
					_ = time.Now()
				}
				now.Add(-1)
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if runs.Load() != 50 || peak.Load() > 3 || peak.Load() < 1 {
		t.Fatalf("%d runs, at most %d at once; want 50 runs, at most 3", runs.Load(), peak.Load())
	}
}
