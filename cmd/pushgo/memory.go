package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory housekeeping. Under load the embedded JetStream server holds a lot of short-lived
// memory — 4–8 MB block caches that expire 10 s after use, message-id windows and per-block
// subject state that expire 2 min after the last write — and Go keeps freed heap for reuse,
// returning it to the OS only slowly: after a burst the process would stay near its peak for
// minutes. So once the process has been idle for releaseAfterIdle, the free heap is handed back
// to the OS, and once more at releaseAfterWindows, when the broker's 2-minute state has expired
// (that memory only becomes free heap after a collection, which the release runs first). Later
// in the same idle period it is released again only if much more became free. A release costs a
// full GC, so it is not done under load, where the memory is about to be used again anyway,
// nor in the first seconds of a pause.
const (
	memoryTick       = 5 * time.Second
	releaseAfterIdle = 30 * time.Second
	// releaseAfterWindows is the second release of an idle period: the broker's longest
	// in-memory windows (the commands' 2 min message-id window, per-block subject state) plus
	// half a minute for its timers.
	releaseAfterWindows = 2*time.Minute + 30*time.Second
	// idleAllocRate is the allocation rate below which the process counts as idle; under any
	// real load pushgo allocates hundreds of MB/s. The process counts as busy again only after
	// two readings above it in a row: an idle broker writes each stream's state snapshot
	// every 2–2.5 min, one burst of tens of MB (its subject index), which is not load.
	idleAllocRate = 2 << 20 // bytes per second
	releaseAbove  = 64 << 20
	releaseAgain  = 256 << 20
)

// memoryState decides when to release memory from successive readings.
type memoryState struct {
	lastAllocs uint64
	idleSince  time.Time // zero while busy
	released   int       // releases at the fixed points of this idle period (0, 1 or 2)
	burst      bool      // the previous reading was above idleAllocRate
}

// observe takes the cumulative allocated bytes and the free heap at now, and reports whether to
// release the free heap now.
func (s *memoryState) observe(now time.Time, allocs, free uint64, tick time.Duration) bool {
	delta := allocs - s.lastAllocs
	s.lastAllocs = allocs
	if float64(delta) > idleAllocRate*tick.Seconds() {
		if s.burst || s.idleSince.IsZero() {
			s.idleSince, s.released = time.Time{}, 0
		}
		s.burst = true
		return false
	}
	s.burst = false
	if s.idleSince.IsZero() {
		s.idleSince = now
	}
	idle := now.Sub(s.idleSince)
	switch {
	case idle >= releaseAfterWindows && s.released < 2:
		// Garbage left by the expired windows is not free heap until collected: release
		// whatever free shows now.
		s.released = 2
		return true
	case idle >= releaseAfterIdle && s.released < 1:
		s.released = 1
		return free > releaseAbove
	case idle >= releaseAfterIdle:
		return free > releaseAgain
	}
	return false
}

// releaseMemory runs the housekeeping until ctx is done.
func releaseMemory(ctx context.Context, log *slog.Logger) {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	t := time.NewTicker(memoryTick)
	defer t.Stop()
	var s memoryState
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 || sample[1].Value.Kind() != metrics.KindUint64 {
				return
			}
			if free := sample[1].Value.Uint64(); s.observe(now, sample[0].Value.Uint64(), free, memoryTick) {
				debug.FreeOSMemory()
				log.Debug("returned free heap to the OS", "bytes", free)
			}
		}
	}
}
