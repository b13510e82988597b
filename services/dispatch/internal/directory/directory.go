// Package directory keeps dispatch's in-memory view of who receives what: the subscriptions of
// every channel (KV pushgo_subs) and every device's route (KV pushgo_devices). Two KV watchers
// per dispatch instance keep it current, so resolving an op's targets costs no broker round
// trip. The view is a projection: it is rebuilt from the buckets on every start.
//
// A change is visible here a moment after the KV write is acknowledged (the watcher's push);
// an op published after its client saw the subscribe answered travels through several more
// hops before it is dispatched, so in practice it sees the change.
package directory

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// Directory is safe for concurrent use.
type Directory struct {
	log *slog.Logger

	mu      sync.RWMutex
	subs    map[string]map[string]struct{} // channel id -> device keys
	devices map[string]*busv1.DeviceRecord
}

// Start loads both buckets and keeps following them until ctx is done. It returns once the
// initial contents are loaded.
func Start(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*Directory, error) {
	d := &Directory{log: log, subs: map[string]map[string]struct{}{}, devices: map[string]*busv1.DeviceRecord{}}
	for _, w := range []struct {
		bucket string
		apply  func(jetstream.KeyValueEntry)
	}{{bus.BucketSubs, d.applySub}, {bus.BucketDevices, d.applyDevice}} {
		kv, err := js.KeyValue(ctx, w.bucket)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", w.bucket, err)
		}
		watcher, err := kv.WatchAll(ctx)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", w.bucket, err)
		}
		synced := make(chan struct{})
		go d.follow(ctx, watcher, w.apply, synced)
		select {
		case <-synced:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("watch %s: initial values not loaded in 30s", w.bucket)
		}
	}
	return d, nil
}

func (d *Directory) follow(ctx context.Context, w jetstream.KeyWatcher, apply func(jetstream.KeyValueEntry), synced chan struct{}) {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // end of the initial values
				if synced != nil {
					close(synced)
					synced = nil
				}
				continue
			}
			apply(e)
		}
	}
}

func (d *Directory) applySub(e jetstream.KeyValueEntry) {
	channel, device, ok := strings.Cut(e.Key(), ".")
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	set := d.subs[channel]
	if e.Operation() != jetstream.KeyValuePut {
		delete(set, device)
		if len(set) == 0 {
			delete(d.subs, channel)
		}
		return
	}
	if set == nil {
		set = map[string]struct{}{}
		d.subs[channel] = set
	}
	set[device] = struct{}{}
}

func (d *Directory) applyDevice(e jetstream.KeyValueEntry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(d.devices, e.Key())
		return
	}
	rec := &busv1.DeviceRecord{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		d.log.Warn("undecodable device record", "key", e.Key(), "err", err)
		return
	}
	d.devices[e.Key()] = rec
}

// Targets returns the devices subscribed to a channel, in device key order. Revoked devices
// (replaced by a new key) and subscriptions of unknown devices are left out.
func (d *Directory) Targets(channelID string) []*busv1.DeviceRecord {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]*busv1.DeviceRecord, 0, len(d.subs[channelID]))
	for key := range d.subs[channelID] {
		if rec := d.devices[key]; rec != nil && rec.GetReplacedBy() == "" {
			out = append(out, rec)
		}
	}
	slices.SortFunc(out, func(a, b *busv1.DeviceRecord) int { return strings.Compare(a.GetDeviceKey(), b.GetDeviceKey()) })
	return out
}

// Device returns a device's record, nil when unknown.
func (d *Directory) Device(key string) *busv1.DeviceRecord {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.devices[key]
}
