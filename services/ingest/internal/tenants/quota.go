package tenants

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// A tenant's counts (busv1.TenantCounts under count.<tenant_id>) change with compare-and-set on
// the record's revision, so that every ingest replica sees and moves the same numbers: a quota
// holds exactly across replicas. Channels and devices are created rarely, so one more KV
// round trip per create is cheap. A count is taken before the create and given back if the
// create fails; a process that dies in between, or a write whose answer a broker failure lost
// (its retry then adds again), leaves the count one too high — in the tenant's disfavour by
// one, never letting it beyond its limit.

// counts reads a tenant's counts; a tenant without any reads as zero (revision 0).
func (s *Store) counts(ctx context.Context, id string) (*busv1.TenantCounts, uint64, error) {
	var e jetstream.KeyValueEntry
	err := bus.Retry(ctx, s.cfg.RetryBudget, func(ctx context.Context) error {
		var err error
		e, err = s.kv.Get(ctx, bus.TenantCountKey(id))
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &busv1.TenantCounts{}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	c := &busv1.TenantCounts{}
	if err := proto.Unmarshal(e.Value(), c); err != nil {
		return nil, 0, fmt.Errorf("decode counts of %s: %w", id, err)
	}
	return c, e.Revision(), nil
}

// changeCount adds delta to a tenant's count of res. When limit > 0 and delta > 0, a count
// already at limit is refused with quota_exceeded. A count never goes below zero. The changes
// of one tenant are serialised within this process (a wave of device registrations would
// otherwise lose most compare-and-sets to each other); only other replicas contend.
func (s *Store) changeCount(ctx context.Context, id string, res Resource, delta int, limit int) error {
	lock := s.countLock(id)
	select {
	case lock <- struct{}{}:
		defer func() { <-lock }()
	case <-ctx.Done():
		return unavailable()
	}
	for range maxCAS {
		c, rev, err := s.counts(ctx, id)
		if err != nil {
			s.log.Warn("tenant store unavailable", "err", err)
			return unavailable()
		}
		n := &c.Channels
		if res == Devices {
			n = &c.Devices
		}
		if delta > 0 && limit > 0 && *n >= uint64(limit) {
			return quotaExceeded(res, limit)
		}
		switch {
		case delta > 0:
			*n += uint64(delta)
		case uint64(-delta) > *n:
			*n = 0
		default:
			*n -= uint64(-delta)
		}
		data, err := proto.Marshal(c)
		if err != nil {
			return err
		}
		err = bus.Retry(ctx, s.cfg.RetryBudget, func(ctx context.Context) error {
			if rev == 0 {
				_, err := s.kv.Create(ctx, bus.TenantCountKey(id), data)
				return err
			}
			_, err := s.kv.Update(ctx, bus.TenantCountKey(id), data, rev)
			return err
		})
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another replica changed it first: read again
		}
		if err != nil {
			s.log.Warn("tenant store unavailable", "err", err)
			return unavailable()
		}
		return nil
	}
	s.log.Warn("tenant counts too contended", "tenant", id)
	return unavailable()
}

// countLock returns the lock (a one-slot semaphore, so that waiting respects ctx) of a
// tenant's counts.
func (s *Store) countLock(id string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.countLocks[id]
	if l == nil {
		l = make(chan struct{}, 1)
		s.countLocks[id] = l
	}
	return l
}

func (s *Store) reserve(ctx context.Context, id string, res Resource, limit int) error {
	return s.changeCount(ctx, id, res, 1, limit)
}

func (s *Store) release(ctx context.Context, id string, res Resource) {
	if err := s.changeCount(context.WithoutCancel(ctx), id, res, -1, 0); err != nil {
		s.log.Warn("could not give back a tenant's quota", "tenant", id, "resource", res.String(), "err", err)
	}
}
