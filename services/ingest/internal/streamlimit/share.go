package streamlimit

import (
	"time"

	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
)

// loop announces the changes every interval and everything every snapshot interval (or at
// the tick after a hello), and sweeps expired entries every snapshot interval, until Close;
// then it announces the last changes and says bye.
func (l *Limiter) loop() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	snapEvery := max(1, int(l.snapshot/l.interval))
	for n := 1; ; n++ {
		select {
		case <-l.stop:
			l.announce(false)
			l.publish(encodeSignal(kindBye, l.id))
			return
		case <-t.C:
			snap := n%snapEvery == 0
			l.announce(l.wantSnapshot.Swap(false) || snap)
			if snap {
				l.sweep()
			}
		}
	}
}

// announce publishes the counts that changed since the last announcement, or with all every
// nonzero count as well.
func (l *Limiter) announce(all bool) {
	recs := l.pending(all)
	if len(recs) == 0 {
		return
	}
	for _, msg := range encode(l.id, recs, l.maxMsg) {
		if !l.publish(msg) {
			return
		}
	}
}

// publish sends one announcement; a failure only leaves the others late until the next
// snapshot.
func (l *Limiter) publish(msg []byte) bool {
	if err := l.nc.Publish(bus.StreamsSubject, msg); err != nil {
		l.log.Debug("stream-count announcement not sent", "err", err)
		return false
	}
	return true
}

// pending collects the counts to announce and forgets which changed: those of the changed keys
// (0 for a key with none left), with all every nonzero count too.
func (l *Limiter) pending(all bool) []record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var recs []record
	if all {
		recs = make([]record, 0, len(l.local)+len(l.dirty))
		for k, n := range l.local {
			recs = append(recs, record{key: k, count: min(n, maxCount)})
		}
		for k := range l.dirty {
			if _, ok := l.local[k]; !ok {
				recs = append(recs, record{key: k})
			}
		}
	} else {
		recs = make([]record, 0, len(l.dirty))
		for k := range l.dirty {
			recs = append(recs, record{key: k, count: min(l.local[k], maxCount)})
		}
	}
	if len(l.dirty) > 0 {
		// A new map, not clear: a burst of changes does not keep its buckets for good.
		l.dirty = map[string]struct{}{}
	}
	return recs
}

// sweep removes expired entries, one instance at a time so that Acquire waits at most for
// one instance's entries, and reports entries dropped because the table was full.
func (l *Limiter) sweep() {
	now := l.now()
	l.mu.Lock()
	ids := l.remote.instances()
	l.mu.Unlock()
	for _, id := range ids {
		l.mu.Lock()
		l.remote.sweepInstance(id, now)
		l.mu.Unlock()
	}
	l.mu.Lock()
	dropped, held := l.remote.dropped, l.remote.n
	l.remote.dropped = 0
	l.mu.Unlock()
	if dropped > 0 {
		l.log.Warn("other ingest instances' stream counts not kept: table full; their streams do not count here",
			"dropped", dropped, "held", held)
	}
}

// onMessage applies an announcement of another instance.
func (l *Limiter) onMessage(m *nats.Msg) {
	if err := l.receive(m.Data); err != nil {
		l.log.Warn("undecodable stream-count announcement dropped", "err", err, "bytes", len(m.Data))
	}
}

// receive decodes and applies one announcement; its own are ignored.
func (l *Limiter) receive(b []byte) error {
	k, id, recs, err := decode(b)
	if err != nil {
		return err
	}
	if id == l.id {
		return nil
	}
	switch k {
	case kindHello:
		l.wantSnapshot.Store(true)
	case kindBye:
		l.mu.Lock()
		l.remote.forget(id)
		l.mu.Unlock()
	case kindCounts:
		now := l.now()
		l.mu.Lock()
		for _, r := range recs {
			l.remote.set(id, r.key, r.count, now)
		}
		l.mu.Unlock()
	}
	return nil
}
