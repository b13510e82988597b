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
	next    staged
}

// Start loads both buckets and keeps following them until ctx is done. It returns once the
// initial contents are loaded.
func Start(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*Directory, error) {
	d := &Directory{log: log, subs: map[string]map[string]struct{}{}, devices: map[string]*busv1.DeviceRecord{}}
	for _, w := range []struct {
		bucket string
		apply  func(jetstream.KeyValueEntry, bool)
	}{{bus.BucketSubs, d.applySub}, {bus.BucketDevices, d.applyDevice}} {
		kv, err := js.KeyValue(ctx, w.bucket)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", w.bucket, err)
		}
		synced := make(chan struct{})
		go d.follow(ctx, kv, w.bucket, w.apply, synced)
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

// follow applies a bucket's changes until ctx is done. If the watch ends (its consumer could
// not be recreated after a broker failure), it is started again and the bucket reloaded: the
// entries of the reload replace the old view once complete, so deletions missed meanwhile do
// not linger.
func (d *Directory) follow(ctx context.Context, kv jetstream.KeyValue, bucket string, apply func(jetstream.KeyValueEntry, bool), synced chan struct{}) {
	backoff := 100 * time.Millisecond
	for first := true; ctx.Err() == nil; first = false {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			d.log.Warn("watch failed; retrying", "bucket", bucket, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		reload := !first
		for e := range w.Updates() {
			if e == nil { // end of the initial values
				if reload {
					d.swap(bucket)
					reload = false
				}
				if synced != nil {
					close(synced)
					synced = nil
				}
				continue
			}
			apply(e, reload)
		}
		_ = w.Stop()
		if ctx.Err() == nil {
			d.log.Warn("watch ended; reloading", "bucket", bucket)
		}
	}
}

// staged views, filled by a reload and swapped in when it is complete.
type staged struct {
	subs    map[string]map[string]struct{}
	devices map[string]*busv1.DeviceRecord
}

func (d *Directory) swap(bucket string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if bucket == bus.BucketSubs {
		d.subs, d.next.subs = d.next.subs, nil
	} else {
		d.devices, d.next.devices = d.next.devices, nil
	}
}

func (d *Directory) applySub(e jetstream.KeyValueEntry, reload bool) {
	channel, device, ok := strings.Cut(e.Key(), ".")
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	subs := d.subs
	if reload {
		if d.next.subs == nil {
			d.next.subs = map[string]map[string]struct{}{}
		}
		subs = d.next.subs
	}
	set := subs[channel]
	if e.Operation() != jetstream.KeyValuePut {
		delete(set, device)
		if len(set) == 0 {
			delete(subs, channel)
		}
		return
	}
	if set == nil {
		set = map[string]struct{}{}
		subs[channel] = set
	}
	set[device] = struct{}{}
}

func (d *Directory) applyDevice(e jetstream.KeyValueEntry, reload bool) {
	var rec *busv1.DeviceRecord
	if e.Operation() == jetstream.KeyValuePut {
		rec = &busv1.DeviceRecord{}
		if err := proto.Unmarshal(e.Value(), rec); err != nil {
			d.log.Warn("undecodable device record", "key", e.Key(), "err", err)
			return
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	devices := d.devices
	if reload {
		if d.next.devices == nil {
			d.next.devices = map[string]*busv1.DeviceRecord{}
		}
		devices = d.next.devices
	}
	if rec == nil {
		delete(devices, e.Key())
		return
	}
	devices[e.Key()] = rec
}

// Targets returns the devices subscribed to a channel, in device key order. Revoked devices
// (replaced by a new key), devices whose provider token the provider refused for good
// (route_invalid) and subscriptions of unknown devices are left out.
func (d *Directory) Targets(channelID string) []*busv1.DeviceRecord {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]*busv1.DeviceRecord, 0, len(d.subs[channelID]))
	for key := range d.subs[channelID] {
		if rec := d.devices[key]; rec != nil && rec.GetReplacedBy() == "" && rec.GetRouteInvalid() == "" {
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
