package bus

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestChannelOfSubject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ subject, want string }{
		{CommandSubject("CH1", "ev1"), "CH1"},
		{EventSubject("CH2", "ev:2"), "CH2"},
		{"pushgo.evt.CH3", "CH3"},
		{"pushgo.evt", "pushgo.evt"},
		{"other.subject.x.y", "other.subject.x.y"},
		{"", ""},
	} {
		if got := channelOfSubject(tc.subject); got != tc.want {
			t.Errorf("channelOfSubject(%q) = %q, want %q", tc.subject, got, tc.want)
		}
	}
}

// take hands out the next message, failing when none is ready at once.
func take(t *testing.T, q *fairQueue[string]) (subject, item string) {
	t.Helper()
	q.mu.Lock()
	ready := len(q.ready)
	q.mu.Unlock()
	if ready == 0 {
		t.Fatal("no message ready")
	}
	subject, item, ok := q.next()
	if !ok {
		t.Fatal("queue closed")
	}
	return subject, item
}

func readyItems(q *fairQueue[string]) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, l := range q.ready {
		out = append(out, l.msgs[0].item)
	}
	return out
}

// TestFairQueueShares: a channel with more subjects than its share gets only its share of
// the workers; another channel's message arriving later is handed out before the first
// channel's held ones; those come in turn as its messages are done.
func TestFairQueueShares(t *testing.T) {
	t.Parallel()
	q := newFairQueue[string](2, channelOfSubject)
	now := time.Now()
	for i := range 4 {
		q.push(EventSubject("A", fmt.Sprint("e", i)), fmt.Sprint("a", i), now)
	}
	q.push(EventSubject("B", "e0"), "b0", now)
	if got, want := readyItems(q), []string{"a0", "a1", "b0"}; !slices.Equal(got, want) {
		t.Fatalf("ready %v, want %v", got, want)
	}
	s0, _ := take(t, q)
	s1, _ := take(t, q)
	sb, _ := take(t, q)
	if got := readyItems(q); len(got) != 0 {
		t.Fatalf("ready %v while A holds its share", got)
	}
	q.done(s0)
	if got, want := readyItems(q), []string{"a2"}; !slices.Equal(got, want) {
		t.Fatalf("after one of A is done: ready %v, want %v", got, want)
	}
	q.done(sb)
	q.done(s1)
	if got, want := readyItems(q), []string{"a2", "a3"}; !slices.Equal(got, want) {
		t.Fatalf("ready %v, want %v", got, want)
	}
	s2, _ := take(t, q)
	s3, _ := take(t, q)
	q.done(s2)
	q.done(s3)
	if len(q.subjects) != 0 || len(q.keys) != 0 || q.len() != 0 {
		t.Fatalf("left behind: %d subjects, %d keys, %d queued", len(q.subjects), len(q.keys), q.len())
	}
}

// TestFairQueueSubjectOrder: one subject's messages go one at a time, in arrival order, and a
// subject with more to do goes behind the subjects admitted meanwhile.
func TestFairQueueSubjectOrder(t *testing.T) {
	t.Parallel()
	q := newFairQueue[string](8, channelOfSubject)
	now := time.Now()
	e1, e2 := EventSubject("A", "e1"), EventSubject("A", "e2")
	q.push(e1, "e1-v1", now)
	q.push(e1, "e1-v2", now)
	q.push(e2, "e2-v1", now)
	if got, want := readyItems(q), []string{"e1-v1", "e2-v1"}; !slices.Equal(got, want) {
		t.Fatalf("ready %v, want %v (one message of a subject at a time)", got, want)
	}
	s, item := take(t, q)
	if item != "e1-v1" {
		t.Fatalf("first %q", item)
	}
	q.done(s)
	if got, want := readyItems(q), []string{"e2-v1", "e1-v2"}; !slices.Equal(got, want) {
		t.Fatalf("ready %v, want %v", got, want)
	}
}

// TestFairQueueClose: close gives back what no worker took, wakes waiting workers, and the
// workers' done calls after it are harmless.
func TestFairQueueClose(t *testing.T) {
	t.Parallel()
	q := newFairQueue[string](1, channelOfSubject)
	now := time.Now()
	q.push(EventSubject("A", "e1"), "a1", now)
	q.push(EventSubject("A", "e1"), "a2", now)
	q.push(EventSubject("A", "e2"), "a3", now)
	s, _ := take(t, q)
	woke := make(chan bool)
	go func() {
		// Nothing is ready (A holds its share): this worker waits until close.
		_, _, ok := q.next()
		woke <- ok
	}()
	left := q.close()
	slices.Sort(left)
	if want := []string{"a2", "a3"}; !slices.Equal(left, want) {
		t.Fatalf("close gave back %v, want %v", left, want)
	}
	select {
	case ok := <-woke:
		if ok {
			t.Fatal("next handed out a message after close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting worker was not woken by close")
	}
	q.done(s)
}

// TestFairQueueKeepAlive: messages waiting at least the interval are reported, once per
// interval.
func TestFairQueueKeepAlive(t *testing.T) {
	t.Parallel()
	q := newFairQueue[string](1, channelOfSubject)
	t0 := time.Unix(1000, 0)
	q.push(EventSubject("A", "e0"), "in-hand", t0)
	q.push(EventSubject("A", "e1"), "held-1", t0)
	q.push(EventSubject("A", "e2"), "held-2", t0.Add(3*time.Second))
	if _, item := take(t, q); item != "in-hand" { // the worker's own keep-alive covers it
		t.Fatalf("took %q", item)
	}
	var got []string
	report := func(m string) { got = append(got, m) }
	q.waiting(t0.Add(4*time.Second), 5*time.Second, report)
	if len(got) != 0 {
		t.Fatalf("reported %v before the interval", got)
	}
	q.waiting(t0.Add(5*time.Second), 5*time.Second, report)
	if want := []string{"held-1"}; !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v", got, want)
	}
	got = nil
	q.waiting(t0.Add(9*time.Second), 5*time.Second, report)
	slices.Sort(got)
	if want := []string{"held-2"}; !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v (held-1 was reported 4 s ago)", got, want)
	}
}

// TestFairQueueConcurrent: workers and a producer at random keep every subject's order, one
// message of a subject at a time, and never more than the share of one channel at once.
func TestFairQueueConcurrent(t *testing.T) {
	t.Parallel()
	const share, workers, msgs = 3, 12, 4000
	q := newFairQueue[string](share, channelOfSubject)
	var mu sync.Mutex
	inKey := map[string]int{}
	inSubject := map[string]bool{}
	last := map[string]int{}
	handled := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				subject, item, ok := q.next()
				if !ok {
					return
				}
				key := channelOfSubject(subject)
				var n int
				if _, err := fmt.Sscanf(item, "%d", &n); err != nil {
					t.Error(err)
				}
				mu.Lock()
				if inSubject[subject] {
					t.Errorf("two messages of %s at once", subject)
				}
				inSubject[subject] = true
				if inKey[key]++; inKey[key] > share {
					t.Errorf("%d messages of %s at once, share %d", inKey[key], key, share)
				}
				if n <= last[subject] {
					t.Errorf("%s: message %d after %d", subject, n, last[subject])
				}
				last[subject] = n
				mu.Unlock()
				<-time.After(time.Duration(rand.IntN(50)) * time.Microsecond)
				mu.Lock()
				inSubject[subject] = false
				inKey[key]--
				handled++
				mu.Unlock()
				q.done(subject)
			}
		})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 1; i <= msgs; i++ {
		// Channel A gets half of all messages, over few events.
		ch := []string{"A", "A", "A", "B", "C", "D"}[r.IntN(6)]
		q.push(EventSubject(ch, fmt.Sprint("e", r.IntN(5))), fmt.Sprint(i), time.Now())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := handled
		mu.Unlock()
		if n == msgs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %d of %d", n, msgs)
		}
		<-time.After(time.Millisecond)
	}
	if left := q.close(); len(left) != 0 {
		t.Fatalf("%d left after all were handled", len(left))
	}
	wg.Wait()
}
