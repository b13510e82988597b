package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// UsageFlushEvery is how often a UsageMeter adds its batched counts to BucketUsage: the op
// path only touches memory, and a tenant's counters are at most this much behind (plus the
// time a flush retries while the broker is away).
const UsageFlushEvery = 2 * time.Second

// usageCAS bounds the compare-and-set attempts of one key in one flush; after a lost one a
// writer waits a random few milliseconds, so that replicas flushing the same tenant at once
// spread out. A key that keeps losing is tried again at the next flush.
const usageCAS = 16

// UsageDay is the UTC day of t as it appears in usage keys: YYYYMMDD.
func UsageDay(t time.Time) string { return t.UTC().Format("20060102") }

// UsageKey is the key of one tenant's usage of one UTC day (UsageDay) in BucketUsage.
func UsageKey(tenantID, day string) string { return tenantID + "." + day }

// ReadUsage reads one tenant's usage of one day; a day without usage reads as zero counts.
func ReadUsage(ctx context.Context, kv jetstream.KeyValue, tenantID, day string, budget time.Duration) (*busv1.TenantUsageRecord, error) {
	rec, _, err := readUsage(ctx, kv, UsageKey(tenantID, day), budget)
	if rec == nil && err == nil {
		rec = &busv1.TenantUsageRecord{TenantId: tenantID, Day: day}
	}
	return rec, err
}

func readUsage(ctx context.Context, kv jetstream.KeyValue, key string, budget time.Duration) (*busv1.TenantUsageRecord, uint64, error) {
	var e jetstream.KeyValueEntry
	err := Retry(ctx, budget, func(ctx context.Context) error {
		var err error
		e, err = kv.Get(ctx, key)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read usage %s: %w", key, err)
	}
	rec := &busv1.TenantUsageRecord{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, 0, fmt.Errorf("decode usage %s: %w", key, err)
	}
	return rec, e.Revision(), nil
}

// UsageMeter counts per-tenant daily usage (event ops, deliveries) in memory and adds the
// counts to BucketUsage with compare-and-set every UsageFlushEvery, so that any number of
// ingest and dispatch instances add to the same keys without a durable write per op. Counts
// not yet flushed are lost if the process dies (at most one flush interval's worth); a count
// whose flush failed is kept and tried again. It is safe for concurrent use.
type UsageMeter struct {
	kv     jetstream.KeyValue
	log    *slog.Logger
	budget time.Duration
	now    func() time.Time

	mu      sync.Mutex
	pending map[usageSlot]usageDelta
}

type usageSlot struct{ tenant, day string }

type usageDelta struct{ ops, deliveries uint64 }

// NewUsageMeter returns a meter over BucketUsage (provisioned by Provision); broker calls of a
// flush are retried within budget.
func NewUsageMeter(ctx context.Context, js jetstream.JetStream, budget time.Duration, log *slog.Logger) (*UsageMeter, error) {
	kv, err := js.KeyValue(ctx, BucketUsage)
	if err != nil {
		return nil, fmt.Errorf("usage bucket: %w", err)
	}
	return &UsageMeter{kv: kv, log: log, budget: budget, now: time.Now, pending: map[usageSlot]usageDelta{}}, nil
}

// KV is the usage bucket, for reading counters back (ReadUsage).
func (m *UsageMeter) KV() jetstream.KeyValue { return m.kv }

// Add counts ops and deliveries for tenantID on the current UTC day. It only touches memory.
// An empty tenantID (public and private mode) is not counted.
func (m *UsageMeter) Add(tenantID string, ops, deliveries uint64) {
	if tenantID == "" || ops == 0 && deliveries == 0 {
		return
	}
	slot := usageSlot{tenantID, UsageDay(m.now())}
	m.mu.Lock()
	d := m.pending[slot]
	d.ops += ops
	d.deliveries += deliveries
	m.pending[slot] = d
	m.mu.Unlock()
}

// Pending returns what this meter counted for a tenant's day and has not flushed yet.
func (m *UsageMeter) Pending(tenantID, day string) (ops, deliveries uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.pending[usageSlot{tenantID, day}]
	return d.ops, d.deliveries
}

// Run flushes every interval (UsageFlushEvery when 0) until ctx is done, then flushes once more
// within a few seconds.
func (m *UsageMeter) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = UsageFlushEvery
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := m.Flush(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("usage flush failed; kept for the next one", "err", err)
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
			defer cancel()
			if err := m.Flush(fctx); err != nil {
				m.log.Warn("final usage flush failed; counts lost", "err", err)
			}
			return
		}
	}
}

// Flush adds every pending count to its key. Counts that could not be added stay pending.
func (m *UsageMeter) Flush(ctx context.Context) error {
	m.mu.Lock()
	batch := m.pending
	if len(batch) == 0 { // the common case outside hosted mode: nothing to write
		m.mu.Unlock()
		return nil
	}
	m.pending = map[usageSlot]usageDelta{}
	m.mu.Unlock()
	var errs []error
	for slot, d := range batch {
		if err := m.add(ctx, slot, d); err != nil {
			errs = append(errs, err)
			m.mu.Lock()
			p := m.pending[slot]
			p.ops += d.ops
			p.deliveries += d.deliveries
			m.pending[slot] = p
			m.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// add adds one delta to its key with compare-and-set on the key's revision.
func (m *UsageMeter) add(ctx context.Context, slot usageSlot, d usageDelta) error {
	key := UsageKey(slot.tenant, slot.day)
	for attempt := range usageCAS {
		if attempt > 0 {
			t := time.NewTimer(time.Duration(1+rand.IntN(5*attempt)) * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		rec, rev, err := readUsage(ctx, m.kv, key, m.budget)
		if err != nil {
			return err
		}
		if rec == nil {
			rec = &busv1.TenantUsageRecord{TenantId: slot.tenant, Day: slot.day}
		}
		rec.Ops += d.ops
		rec.Deliveries += d.deliveries
		rec.UpdatedAt = m.now().UnixMilli()
		data, err := proto.Marshal(rec)
		if err != nil {
			return err
		}
		err = Retry(ctx, m.budget, func(ctx context.Context) error {
			if rev == 0 {
				_, err := m.kv.Create(ctx, key, data)
				return err
			}
			_, err := m.kv.Update(ctx, key, data, rev)
			return err
		})
		// An attempt that timed out but landed makes the retry fail the revision check; the
		// next round then reads the count already added and adds again. That over-counts by
		// one batch, only when an answer is lost in a broker failure.
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("add usage %s: %w", key, err)
		}
		return nil
	}
	return fmt.Errorf("add usage %s: too many concurrent writers", key)
}
