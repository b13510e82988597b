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
// and Go keeps freed heap for reuse, returning it to the OS only slowly. After a burst the
// process would stay at its peak for minutes. Every releaseEvery, when more than releaseAbove
// of heap is free but still held, it is handed back to the OS (one forced GC per release).
const (
	releaseEvery = 30 * time.Second
	releaseAbove = 64 << 20
)

// releaseMemory runs the housekeeping until ctx is done.
func releaseMemory(ctx context.Context, log *slog.Logger) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		if free := sample[0].Value.Uint64(); free > releaseAbove {
			debug.FreeOSMemory()
			log.Debug("returned free heap to the OS", "bytes", free)
		}
	}
}
