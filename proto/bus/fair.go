package bus

import (
	"strings"
	"sync"
	"time"
)

// fairQueue hands received messages to workers so that no channel can hold every worker:
// the messages of one subject (one event) one at a time and in arrival order, at most perKey
// messages of one key (a channel) at once, and otherwise first come first served. A channel
// whose ops are slow (a webhook that does not answer, within the delivery budget) thus waits
// for its own share of the workers while the other channels' messages pass it.
//
// It holds every message it is given: what bounds it is the consumer's MaxAckPending.
type fairQueue[T any] struct {
	perKey int
	keyOf  func(subject string) string

	mu       sync.Mutex
	wake     *sync.Cond
	subjects map[string]*subjectLine[T] // subjects with a message queued or in hand
	keys     map[string]*keyShare[T]    // keys with a message admitted or held back
	ready    []*subjectLine[T]          // admitted, waiting for a worker, oldest first
	closed   bool
}

// queued is one message and when it arrived.
type queued[T any] struct {
	item T
	at   time.Time
}

// subjectLine is one subject's messages not yet handled, oldest first.
type subjectLine[T any] struct {
	subject, key string
	msgs         []queued[T]
	busy         bool // a worker has its first message in hand
	scheduled    bool // in ready or in its key's held list
}

// keyShare is one key's admitted subjects (ready or in hand) and those held back by perKey.
type keyShare[T any] struct {
	admitted int
	held     []*subjectLine[T]
}

func newFairQueue[T any](perKey int, keyOf func(string) string) *fairQueue[T] {
	q := &fairQueue[T]{perKey: max(perKey, 1), keyOf: keyOf, subjects: map[string]*subjectLine[T]{}, keys: map[string]*keyShare[T]{}}
	q.wake = sync.NewCond(&q.mu)
	return q
}

// push queues item, a message on subject, arrived at now.
func (q *fairQueue[T]) push(subject string, item T, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.subjects[subject]
	if l == nil {
		l = &subjectLine[T]{subject: subject, key: q.keyOf(subject)}
		q.subjects[subject] = l
	}
	l.msgs = append(l.msgs, queued[T]{item, now})
	if !l.busy && !l.scheduled {
		q.schedule(l)
	}
}

// schedule admits l's next message when its key is under its share, else holds it back. q.mu
// is held.
func (q *fairQueue[T]) schedule(l *subjectLine[T]) {
	k := q.keys[l.key]
	if k == nil {
		k = &keyShare[T]{}
		q.keys[l.key] = k
	}
	l.scheduled = true
	if k.admitted < q.perKey {
		k.admitted++
		q.ready = append(q.ready, l)
		q.wake.Signal()
		return
	}
	k.held = append(k.held, l)
}

// next waits for an admitted message and hands it to the calling worker, which must call
// done with the subject when it has handled it. ok is false once the queue is closed.
func (q *fairQueue[T]) next() (subject string, item T, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ready) == 0 && !q.closed {
		q.wake.Wait()
	}
	if q.closed {
		return "", item, false
	}
	l := q.ready[0]
	q.ready[0] = nil
	q.ready = q.ready[1:]
	m := l.msgs[0]
	l.msgs[0] = queued[T]{}
	l.msgs = l.msgs[1:]
	l.busy, l.scheduled = true, false
	return l.subject, m.item, true
}

// done records that the worker finished subject's message: the subject's next message and
// its key's held subjects get their turn.
func (q *fairQueue[T]) done(subject string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.subjects[subject]
	if l == nil {
		return
	}
	l.busy = false
	k := q.keys[l.key]
	k.admitted--
	if len(l.msgs) > 0 {
		q.schedule(l) // behind every subject admitted meanwhile: turns go round
	} else {
		delete(q.subjects, subject)
	}
	for k.admitted < q.perKey && len(k.held) > 0 {
		h := k.held[0]
		k.held[0] = nil
		k.held = k.held[1:]
		k.admitted++
		q.ready = append(q.ready, h)
		q.wake.Signal()
	}
	if k.admitted == 0 && len(k.held) == 0 {
		delete(q.keys, l.key)
	}
}

// close wakes the waiting workers (next returns ok false) and returns the messages not handed
// to a worker, oldest first per subject, for the caller to give back.
func (q *fairQueue[T]) close() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.wake.Broadcast()
	var left []T
	for _, l := range q.subjects {
		for _, m := range l.msgs {
			left = append(left, m.item)
		}
		l.msgs = nil
	}
	q.ready = nil
	return left
}

// waiting calls fn for every queued message that arrived at least d before now, and counts
// it as arrived now (a keep-alive is due again d later).
func (q *fairQueue[T]) waiting(now time.Time, d time.Duration, fn func(T)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range q.subjects {
		for i := range l.msgs {
			if m := &l.msgs[i]; now.Sub(m.at) >= d {
				fn(m.item)
				m.at = now
			}
		}
	}
}

// len returns the messages queued, not yet in a worker's hand (tests).
func (q *fairQueue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, l := range q.subjects {
		n += len(l.msgs)
	}
	return n
}

// channelOfSubject is the channel token of a command or domain-event subject
// (pushgo.<kind>.<channel>.<event>); a subject of another shape is its own key.
func channelOfSubject(subject string) string {
	rest, ok := strings.CutPrefix(subject, "pushgo.")
	if !ok {
		return subject
	}
	_, rest, ok = strings.Cut(rest, ".")
	if !ok {
		return subject
	}
	ch, _, _ := strings.Cut(rest, ".")
	return ch
}
