package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Options, each the product's promise unless configured otherwise.
const (
	// DefaultEventsMaxAge keeps the event store (audit log) for 30 days.
	DefaultEventsMaxAge = 30 * 24 * time.Hour
	// EventsForever as Options.EventsMaxAge keeps the event store for ever (no max age); the
	// flag --events-max-age 0 sets it.
	EventsForever time.Duration = -1
	// DefaultInboxMaxAge keeps undelivered inbox items for 7 days.
	DefaultInboxMaxAge = 7 * 24 * time.Hour
	// DefaultIdempotencyWindow keeps op records, and so op_id replays, for 24 hours.
	DefaultIdempotencyWindow = 24 * time.Hour
	// DefaultDuplicateWindow is the commands' Nats-Msg-Id window (DESIGN.md §2: at least 2 min).
	// It covers the ~20 s a publisher retries through a leader election with room to spare.
	DefaultDuplicateWindow = 2 * time.Minute
	// EventsDuplicateWindow is the event store's Nats-Msg-Id window. It only has to cover an
	// append retried through an election (each attempt retries it within 15 s): a command redelivered
	// later is recognised by the history check, not by the message id. Every id in a window
	// costs server memory (~75 bytes), at thousands of ops per second.
	EventsDuplicateWindow = 15 * time.Second
	// InboxDuplicateWindow is the inboxes' Nats-Msg-Id window: it covers a domain event
	// redelivered after a dispatch instance died (dispatch's 15 s ack wait, the 4 s delivery
	// budget and the retries of an election), which re-appends with the same delivery ids.
	InboxDuplicateWindow = 40 * time.Second
	// DefaultInboxPerDevice caps one device's inbox; the oldest item is dropped beyond it.
	DefaultInboxPerDevice = 1000
	// AttemptsPerDevice and AttemptsMaxAge bound the webhook attempts kept per device.
	AttemptsPerDevice = 100
	AttemptsMaxAge    = 7 * 24 * time.Hour
	// RetriesMaxAge bounds how long a due retry task or a schedule stays in StreamRetries: past
	// the longest schedule (the default adds up to 46.6 h) and its Retry-After waits.
	RetriesMaxAge = 7 * 24 * time.Hour
	// UsageRetention is how long a day's usage counters are kept: a month and a few days, for
	// the month's bill to be read after it ends. A day's key is last written that day, so it
	// expires this long after.
	UsageRetention = 35 * 24 * time.Hour
)

// Options sizes the streams and buckets. The zero value of a field means its default.
type Options struct {
	// Replicas of every stream and bucket: 1 for the all-in-one server, 3 in a cluster.
	Replicas int
	// EventsMaxAge is the event store's retention: DefaultEventsMaxAge when 0, for ever when
	// negative (EventsForever).
	EventsMaxAge      time.Duration
	InboxMaxAge       time.Duration
	IdempotencyWindow time.Duration
	DuplicateWindow   time.Duration
	InboxPerDevice    int64
	// Partitions splits the commands and the events into this many streams each (Layout); 0
	// is one. A store keeps the count it was made with (MetaPartitions).
	Partitions int
	// EventsCreateMetadata, when set, gives metadata for an events stream being created
	// (lifecycle: the log's signing horizon, so that no configuration update follows the
	// creation while other services create their consumers on it). Not applied to existing
	// streams.
	EventsCreateMetadata func(stream string) map[string]string
	// ConfirmShorterRetention lets Provision shorten the retention of an existing event store
	// (or give a limit to one kept for ever), which deletes the history beyond it. Without it
	// Provision refuses with a *RetentionError: history is never shortened silently.
	ConfirmShorterRetention bool
}

func (o Options) withDefaults() Options {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.EventsMaxAge == 0 {
		o.EventsMaxAge = DefaultEventsMaxAge
	}
	if o.InboxMaxAge <= 0 {
		o.InboxMaxAge = DefaultInboxMaxAge
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	// JetStream refuses a duplicate window longer than a stream's max age.
	o.DuplicateWindow = min(o.DuplicateWindow, o.IdempotencyWindow, o.InboxMaxAge)
	if o.EventsMaxAge > 0 {
		o.DuplicateWindow = min(o.DuplicateWindow, o.EventsMaxAge)
	}
	if o.InboxPerDevice <= 0 {
		o.InboxPerDevice = DefaultInboxPerDevice
	}
	o.Partitions = max(o.Partitions, 1)
	return o
}

// Layout is the stream layout of o's partition count.
func (o Options) Layout() Layout { return NewLayout(o.Partitions) }

// StreamConfigs returns the configuration of every stream of DESIGN.md §2.
func StreamConfigs(o Options) []jetstream.StreamConfig {
	o = o.withDefaults()
	l := o.Layout()
	var out []jetstream.StreamConfig
	for p := range l.Partitions() {
		out = append(out, jetstream.StreamConfig{
			Name:        l.CommandsStream(p),
			Description: "validated commands, consumed once by lifecycle, which removes the folded ones",
			Subjects:    []string{l.CommandFilter(p)},
			// A work queue with batched removal: lifecycle.TrimEvery says why not WorkQueuePolicy.
			Retention:  jetstream.LimitsPolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   o.Replicas,
			Duplicates: o.DuplicateWindow,
		}, jetstream.StreamConfig{
			Name:        l.EventsStream(p),
			Description: "event store and audit log: one domain event per accepted op, one subject per event",
			Subjects:    []string{l.EventFilter(p)},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      max(o.EventsMaxAge, 0), // 0: no limit
			Duplicates:  min(o.DuplicateWindow, EventsDuplicateWindow),
			DenyDelete:  true,
			DenyPurge:   true,
			AllowDirect: true,
		})
	}
	// The store's partition count, recorded when it is made (provision keeps it after).
	out[1].Metadata = map[string]string{MetaPartitions: strconv.Itoa(l.Partitions())}
	return append(out, []jetstream.StreamConfig{{
		Name:              StreamInbox,
		Description:       "per-device durable inboxes",
		Subjects:          []string{InboxSubjects},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		MaxAge:            o.InboxMaxAge,
		MaxMsgsPerSubject: o.InboxPerDevice,
		Duplicates:        min(o.DuplicateWindow, InboxDuplicateWindow),
		// Reads of inboxes go to the leader (LeaderRange): an acked item must never come back.
		AllowDirect: false,
	}, {
		Name:        StreamOutcomes,
		Description: "outcome journal: batched outcomes of delivered ops, for answering repeats (docs/scale.md)",
		Subjects:    []string{OutcomesSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		// A repeat is answered from here for as long as the op's idempotency record lives.
		MaxAge: o.IdempotencyWindow,
		// Each batch has its own random id; the window only covers a publish retried through an
		// election (Journal retries for 10 s).
		Duplicates: min(o.DuplicateWindow, EventsDuplicateWindow),
		// Reads go to the leader (LookupOutcome): a repeat must see an outcome journaled before it.
		AllowDirect: false,
	}, {
		Name:        StreamRetries,
		Description: "durable retry schedule of webhook deliveries: schedules, and tasks due",
		Subjects:    []string{RetrySubjects},
		// Due tasks leave when acked and schedules when they fire (Nats-Schedule-Next: purge).
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		MaxAge:            RetriesMaxAge,
		Duplicates:        o.DuplicateWindow,
		AllowMsgSchedules: true,
		AllowRollup:       true, // message schedules need it
	}, {
		Name:              StreamAttempts,
		Description:       "attempts of webhook deliveries, per device",
		Subjects:          []string{AttemptSubjects},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		MaxAge:            AttemptsMaxAge,
		MaxMsgsPerSubject: AttemptsPerDevice,
		Duplicates:        o.DuplicateWindow,
		AllowDirect:       true, // a diagnostic list: a replica a moment behind is fine
	}}...)
}

// BucketConfigs returns the configuration of every key-value bucket of DESIGN.md §2.
func BucketConfigs(o Options) []jetstream.KeyValueConfig {
	o = o.withDefaults()
	return []jetstream.KeyValueConfig{
		{Bucket: BucketOps, Description: "op records: idempotency and outcomes", TTL: o.IdempotencyWindow, History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: BucketChannels, Description: "channels", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: BucketDevices, Description: "devices and their routes", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		// Unsubscribes are purges with a TTL (SubsMarkerTTL), which needs per-message TTLs.
		{Bucket: BucketSubs, Description: "channel subscriptions", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas, LimitMarkerTTL: SubsMarkerTTL},
		{Bucket: BucketTenants, Description: "tenants of a hosted gateway and their counts", History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: BucketUsage, Description: "per-tenant daily usage", TTL: UsageRetention, History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas},
	}
}

// Provision creates or updates every stream and bucket. It is idempotent and safe to run from
// several instances at once. It needs every role's admin rights: tests and tools with full
// access use it; services use ProvisionRole.
func Provision(ctx context.Context, js jetstream.JetStream, o Options) error {
	return provision(ctx, js, o, func(string) bool { return true })
}

// ProvisionRole creates or updates the streams and buckets role owns (Permissions.Provisions),
// then waits until those it needs from other roles exist (Permissions.Needs), logging every
// waitLogEvery while it waits, until ctx is done. Each service runs it at start, so no start
// order is needed: a service started before the owner of a stream it reads waits for it.
func ProvisionRole(ctx context.Context, js jetstream.JetStream, o Options, role Role, log *slog.Logger) error {
	p, ok := permissionsIn(TableFor(o.withDefaults().Partitions), role)
	if !ok {
		return fmt.Errorf("provision: unknown role %q", role)
	}
	if err := provision(ctx, js, o, func(stream string) bool { return slices.Contains(p.Provisions, stream) }); err != nil {
		return err
	}
	for _, name := range p.Needs {
		if err := waitStream(ctx, js, name, log); err != nil {
			return err
		}
	}
	if slices.ContainsFunc(p.Needs, isEvents) {
		return CheckPartitions(ctx, js, o.Layout())
	}
	return nil
}

// waitLogEvery is how often ProvisionRole says what it is waiting for.
const waitLogEvery = 10 * time.Second

// waitStream polls until stream exists.
func waitStream(ctx context.Context, js jetstream.JetStream, name string, log *slog.Logger) error {
	began, logged := time.Now(), time.Now()
	for {
		tctx, cancel := context.WithTimeout(ctx, PerTry)
		_, err := js.Stream(tctx, name)
		cancel()
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) && !Transient(err) {
			return fmt.Errorf("wait for stream %s: %w", name, err)
		}
		if time.Since(logged) >= waitLogEvery {
			logged = time.Now()
			log.Warn("waiting for a stream another service provisions", "stream", name, "waited", time.Since(began).Round(time.Second), "err", err)
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for stream %s: %w", name, errors.Join(err, ctx.Err()))
		case <-t.C:
		}
	}
}

func provision(ctx context.Context, js jetstream.JetStream, o Options, owned func(stream string) bool) error {
	o = o.withDefaults()
	for _, cfg := range StreamConfigs(o) {
		if !owned(cfg.Name) {
			continue
		}
		if err := retryProvision(ctx, func() error {
			s, err := js.Stream(ctx, cfg.Name)
			switch {
			case errors.Is(err, jetstream.ErrStreamNotFound):
			case err != nil:
				// Not knowing the current retention, do not risk shortening it.
				return err
			case isEvents(cfg.Name) && !o.ConfirmShorterRetention && shorter(cfg.MaxAge, s.CachedInfo().Config.MaxAge):
				return &RetentionError{Stream: cfg.Name, Old: s.CachedInfo().Config.MaxAge, New: cfg.MaxAge}
			case cfg.Name == StreamEvents:
				if n := storedPartitions(s.CachedInfo().Config.Metadata); n != o.Partitions {
					return &PartitionsError{Store: n, Flag: o.Partitions}
				}
			}
			if err != nil && isEvents(cfg.Name) && o.EventsCreateMetadata != nil {
				cfg.Metadata = maps.Clone(cfg.Metadata)
				if cfg.Metadata == nil {
					cfg.Metadata = map[string]string{}
				}
				maps.Copy(cfg.Metadata, o.EventsCreateMetadata(cfg.Name))
			}
			if err == nil {
				old := s.CachedInfo().Config
				// JetStream cannot change a retention policy to or from work queue: a
				// commands stream made by an earlier version keeps its work-queue retention,
				// which is correct and only slower (lifecycle's trim then finds nothing to
				// remove).
				if old.Retention == jetstream.WorkQueuePolicy {
					cfg.Retention = jetstream.WorkQueuePolicy
				}
				// Metadata written since (the log's signing horizon) stays.
				cfg.Metadata = old.Metadata
				if sameStreamConfig(cfg, old) {
					// Nothing to change: no update, which would race (in nats-server) with
					// other services creating their consumers on the stream at start.
					return nil
				}
			}
			_, err = js.CreateOrUpdateStream(ctx, cfg)
			return err
		}); err != nil {
			return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	for _, cfg := range BucketConfigs(o) {
		if !owned(KVStream(cfg.Bucket)) {
			continue
		}
		if err := retryProvision(ctx, func() error { return ensureBucket(ctx, js, cfg) }); err != nil {
			return fmt.Errorf("provision bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// RetentionError is Provision's refusal to shorten the event store's retention without
// Options.ConfirmShorterRetention. A max age of 0 is for ever.
type RetentionError struct {
	Stream   string
	Old, New time.Duration
}

func (e *RetentionError) Error() string {
	age := func(d time.Duration) string {
		if d <= 0 {
			return "for ever"
		}
		return d.String()
	}
	return fmt.Sprintf("refusing to shorten the retention of %s from %s to %s, which deletes the history older than %s: "+
		"give --confirm-shorter-retention (PUSHGO_CONFIRM_SHORTER_RETENTION=true) to apply it, or set --events-max-age to %s or more (0 keeps it for ever)",
		e.Stream, age(e.Old), age(e.New), age(e.New), age(e.Old))
}

// shorter reports whether a stream max age next keeps less than prev (0 is no limit).
func shorter(next, prev time.Duration) bool {
	return next > 0 && (prev <= 0 || next < prev)
}

// ensureBucket creates a bucket, or brings an existing one to cfg's replicas and TTL (turning
// per-message TTLs on when cfg has a LimitMarkerTTL), and turns direct gets off on its stream:
// every Get is then answered by the stream leader and sees every write acknowledged before it
// (a device registered and used at once, a channel created and used at once), where a direct
// get may be answered by a replica that is a moment behind.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) error {
	name := KVStream(cfg.Bucket)
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateKeyValue(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return err
		}
		st, err = js.Stream(ctx, name)
	}
	if err != nil {
		return err
	}
	sc := st.CachedInfo().Config
	ttls := cfg.LimitMarkerTTL <= 0 || sc.AllowMsgTTL
	if !sc.AllowDirect && sc.Replicas == cfg.Replicas && sc.MaxAge == cfg.TTL && ttls {
		return nil
	}
	sc.AllowDirect, sc.Replicas, sc.MaxAge = false, cfg.Replicas, cfg.TTL
	if !ttls { // a bucket made by an earlier build: per-message TTLs can be turned on later
		sc.AllowMsgTTL = true
	}
	if cfg.TTL > 0 {
		sc.Duplicates = min(sc.Duplicates, cfg.TTL)
	}
	_, err = js.UpdateStream(ctx, sc)
	return err
}

// retryProvision retries an admin call that lost a race with another instance doing the same,
// or that met a cluster still electing its meta leader.
func retryProvision(ctx context.Context, f func() error) error {
	const attempts = 20
	var err error
	for i := range attempts {
		if err = f(); err == nil {
			return nil
		}
		re, pe := (*RetentionError)(nil), (*PartitionsError)(nil)
		if errors.Is(err, context.Canceled) || errors.As(err, &re) || errors.As(err, &pe) {
			return err
		}
		t := time.NewTimer(time.Duration(100*(i+1)) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
	return err
}

// sameStreamConfig reports whether an existing stream's configuration already has every
// field provisioning sets.
func sameStreamConfig(want, have jetstream.StreamConfig) bool {
	return want.Description == have.Description && slices.Equal(want.Subjects, have.Subjects) &&
		want.Retention == have.Retention && want.Storage == have.Storage && want.Replicas == have.Replicas &&
		want.MaxAge == have.MaxAge && want.Duplicates == have.Duplicates && want.DenyDelete == have.DenyDelete &&
		want.DenyPurge == have.DenyPurge && want.AllowDirect == have.AllowDirect &&
		want.AllowMsgSchedules == have.AllowMsgSchedules && want.AllowRollup == have.AllowRollup &&
		max(want.MaxMsgsPerSubject, 0) == max(have.MaxMsgsPerSubject, 0) && // the server reports "none" as -1
		maps.Equal(want.Metadata, have.Metadata)
}

// isEvents reports whether stream is an events stream (of any partition).
func isEvents(stream string) bool {
	return stream == StreamEvents || strings.HasPrefix(stream, StreamEvents+"_")
}
