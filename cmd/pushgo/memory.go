package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory housekeeping. Under load the embedded JetStream server holds a lot of short-lived
// memory — 4–8 MB block caches that expire 10 s after use, message-id windows of up to 2 min —
// and Go keeps freed heap for reuse, returning it to the OS only slowly: after a burst the
// process would stay near its peak for minutes. So once the process has been idle for
// releaseAfterIdle, the free heap it still holds is handed back to the OS, once per idle period
// (again only if much more became free since). A release costs a full GC, so it is not done
// under load, where the memory is about to be used again anyway, nor in the first seconds of a
// pause.
const (
	memoryTick       = 5 * time.Second
	releaseAfterIdle = 30 * time.Second
	// idleAllocRate is the allocation rate below which the process counts as idle; under any
	// real load pushgo allocates hundreds of MB/s.
	idleAllocRate = 2 << 20 // bytes per second
	releaseAbove  = 64 << 20
	releaseAgain  = 256 << 20
)

// memoryState decides when to release memory from successive readings.
type memoryState struct {
	lastAllocs uint64
	idleSince  time.Time // zero while busy
	released   bool      // released in this idle period
}

// observe takes the cumulative allocated bytes and the free heap at now, and reports whether to
// release the free heap now.
func (s *memoryState) observe(now time.Time, allocs, free uint64, tick time.Duration) bool {
	delta := allocs - s.lastAllocs
	s.lastAllocs = allocs
	if float64(delta) > idleAllocRate*tick.Seconds() {
		s.idleSince, s.released = time.Time{}, false
		return false
	}
	if s.idleSince.IsZero() {
		s.idleSince = now
	}
	if now.Sub(s.idleSince) < releaseAfterIdle {
		return false
	}
	if free > releaseAgain || (free > releaseAbove && !s.released) {
		s.released = true
		return true
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
