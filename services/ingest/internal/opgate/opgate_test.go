package opgate

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/bus/bustest"
)

// long is a lease no test outlives: slots come back by leave only.
const long = time.Hour

// entered runs Enter in a goroutine and returns where its result arrives.
func entered(ctx context.Context, g *Gate, key string) <-chan func() {
	c := make(chan func(), 1)
	go func() {
		leave, err := g.Enter(ctx, key)
		if err != nil {
			close(c)
			return
		}
		c <- leave
	}()
	return c
}

func mustEnter(t *testing.T, g *Gate, key string) func() {
	t.Helper()
	leave, err := g.Enter(t.Context(), key)
	if err != nil {
		t.Fatalf("Enter(%q): %v", key, err)
	}
	return leave
}

func TestSlotsPerKey(t *testing.T) {
	t.Parallel()
	g := New(2, long)
	a1, a2 := mustEnter(t, g, "a"), mustEnter(t, g, "a")
	// Another key has slots of its own.
	b1 := mustEnter(t, g, "b")
	third := entered(t.Context(), g, "a")
	bustest.Eventually(t, 5*time.Second, "the third op of a to queue", func() bool { return g.Waiting("a") == 1 })
	select {
	case <-third:
		t.Fatal("a third op of a got in with both slots taken")
	default:
	}
	a1()
	a3 := <-third
	if a3 == nil {
		t.Fatal("the waiter was refused")
	}
	a1() // a second leave does nothing: the slot it freed is a3's now
	fourth := entered(t.Context(), g, "a")
	bustest.Eventually(t, 5*time.Second, "the fourth op of a to queue", func() bool { return g.Waiting("a") == 1 })
	a2()
	(<-fourth)()
	a3()
	b1()
	if n := g.Keys(); n != 0 {
		t.Fatalf("%d keys left after every leave", n)
	}
}

// TestArrivalOrder: waiters get the slot in the order they came.
func TestArrivalOrder(t *testing.T) {
	t.Parallel()
	g := New(1, long)
	held := mustEnter(t, g, "a")
	const n = 20
	var got []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			leave, err := g.Enter(t.Context(), "a")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got = append(got, i)
			mu.Unlock()
			leave()
		})
		bustest.Eventually(t, 5*time.Second, "a waiter to queue", func() bool { return g.Waiting("a") == i+1 })
	}
	held()
	wg.Wait()
	for i, v := range got {
		if v != i {
			t.Fatalf("served in order %v, want 0..%d", got, n-1)
		}
	}
}

// TestLeaseFreesTheSlot: an op that outlives its lease no longer holds its channel's slot.
func TestLeaseFreesTheSlot(t *testing.T) {
	t.Parallel()
	g := New(1, 20*time.Millisecond)
	slow := mustEnter(t, g, "a") // never left before the next one gets in
	next := entered(t.Context(), g, "a")
	select {
	case leave := <-next:
		if leave == nil {
			t.Fatal("refused")
		}
		leave()
	case <-time.After(5 * time.Second):
		t.Fatal("the lease did not free the slot")
	}
	slow() // after its lease: does nothing
	bustest.Eventually(t, 5*time.Second, "the key to go", func() bool { return g.Keys() == 0 })
}

// TestCancelWhileWaiting: a caller that gives up leaves the queue; it holds no slot.
func TestCancelWhileWaiting(t *testing.T) {
	t.Parallel()
	g := New(1, long)
	held := mustEnter(t, g, "a")
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := g.Enter(ctx, "a")
		errc <- err
	}()
	bustest.Eventually(t, 5*time.Second, "the waiter to queue", func() bool { return g.Waiting("a") == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Enter after cancel = %v, want context.Canceled", err)
	}
	if w := g.Waiting("a"); w != 0 {
		t.Fatalf("%d waiting after the cancel", w)
	}
	held()
	if n := g.Keys(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

// TestNoSlotLost: many callers entering, leaving, giving up and outliving leases at random
// leave nothing behind: every slot comes back.
func TestNoSlotLost(t *testing.T) {
	t.Parallel()
	const slots = 2
	g := New(slots, 2*time.Millisecond)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			for range 200 {
				key := []string{"a", "b", "c"}[r.IntN(3)]
				ctx, cancel := context.WithCancel(t.Context())
				if r.IntN(4) == 0 {
					cancel() // gives up at once, or as it is handed a slot
				}
				leave, err := g.Enter(ctx, key)
				cancel()
				if err != nil {
					continue
				}
				if r.IntN(8) == 0 {
					<-time.After(3 * time.Millisecond) // outlives its lease
				}
				leave()
			}
		})
	}
	wg.Wait()
	bustest.Eventually(t, 5*time.Second, "every key to go", func() bool { return g.Keys() == 0 })
}

// TestBoundWithoutLease: without leases running out, at most slots ops of a key are inside
// at once.
func TestBoundWithoutLease(t *testing.T) {
	t.Parallel()
	const slots = 3
	g := New(slots, long)
	var mu sync.Mutex
	inside, most := 0, 0
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 50 {
				leave, err := g.Enter(t.Context(), "a")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				most = max(most, inside)
				mu.Unlock()
				runtime.Gosched() // let the others try to get in
				mu.Lock()
				inside--
				mu.Unlock()
				leave()
			}
		})
	}
	wg.Wait()
	if most != slots {
		t.Fatalf("at most %d ops inside at once, want %d", most, slots)
	}
	if n := g.Keys(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

func TestOff(t *testing.T) {
	t.Parallel()
	g := New(0, 0)
	if g != nil {
		t.Fatal("New(0) is a gate")
	}
	for range 100 {
		leave, err := g.Enter(t.Context(), "a")
		if err != nil {
			t.Fatal(err)
		}
		defer leave()
	}
	if g.Waiting("a") != 0 || g.Keys() != 0 {
		t.Fatal("a nil gate counts")
	}
}
