// Package streamlimit bounds the live streams (SSE and WebSocket) of one device and of one
// tenant (DESIGN.md §8.2), across every ingest instance connected to one NATS: the stream
// routes call Acquire before they answer, and the release it returns when the stream ends. A
// refusal is 429 too_many_streams.
//
// # How the instances share
//
// Each instance counts its own streams exactly; Acquire and release stay local and synchronous,
// with no broker round trip. Each instance also announces its counts on the core NATS subject
// bus.StreamsSubject, tagged with a random instance id, and keeps what the others announce.
// Acquire refuses when this instance's count plus the others' for the device (or the tenant)
// has reached the limit; Count is the same sum for a tenant.
//
// Announcements are gauges, not deltas: each record is a key's absolute count on its sender
// (keys "d.<device key>" and "t.<tenant id>"; devices without a tenant have no tenant key).
// Every Options.Interval (100 ms) an instance announces the keys whose count changed since its
// last announcement (0 for a key that has none left); every Options.SnapshotInterval (5 s) all
// its nonzero counts; both in messages of at most Options.MaxMessageBytes (and of the
// connection's max payload). A receiver keeps, per instance and key, the last count and when
// it heard it: a 0 deletes the entry, and an entry not heard again within Options.Expiry (15 s,
// three snapshots) no longer counts. An instance that starts says hello and the others answer
// with all their counts at their next tick, so it hears them within about one interval; an
// instance that closes announces its last changes and says bye, and the others forget it.
//
// What is not exact, and why it is bounded:
//
//   - Each instance admits against the counts it has heard, which lag by up to one Interval
//     plus transit. So a key's count across the instances can exceed its limit by what the
//     other instances admitted within that lag: for a client that opens streams one after
//     another over N instances, at most N−1 streams per interval; for one that opens many at
//     the same moment on every instance, up to the limit on each (as with counts per
//     instance). The excess does not last: once the announcements land, no stream of the key
//     is admitted until its count across the instances is below the limit again. Streams
//     already admitted are not closed; they end as streams do.
//   - Announcements are at-most-once (core NATS). A lost increase counts here from the sender's
//     next snapshot (lenient for up to SnapshotInterval); a lost decrease keeps the old count
//     until it expires (strict for up to Expiry). Streams of an instance that dies without a
//     bye keep counting elsewhere for up to Expiry, which is what their clients reconnecting
//     to other instances may meet.
//   - Whoever can publish on the subject can announce counts and so refuse streams; the
//     broker's access control is the boundary, as for every other subject.
//
// The price: every SnapshotInterval an instance sends each other one ~40 bytes per key it
// holds streams of (a device key of 32 characters), and the changes in between.
//
// # Memory
//
// At most Options.MaxRemote (1,000,000) announced entries are held, over all instances (~100
// bytes each). When the table is full a new entry is dropped, so those streams do not count
// here (lenient), and a warning is logged; entries already held are still updated and
// deleted. Expired entries stop counting at once and are removed every SnapshotInterval. Keys
// longer than MaxKeyLen bytes are replaced by their namespace, "#" and the hex SHA-256 of the
// id, the same on every instance.
//
// A Limiter made by New, or by NewShared without a connection, counts this instance alone.
package streamlimit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Defaults of Options.
const (
	// DefaultInterval bounds how late the others hear of a change: at most 10 messages a
	// second per instance whose streams change.
	DefaultInterval = 100 * time.Millisecond
	// DefaultSnapshotInterval is how often all counts are announced, which heals lost
	// announcements.
	DefaultSnapshotInterval = 5 * time.Second
	// DefaultExpiryFactor × SnapshotInterval is the default Expiry: two snapshots in a row may
	// be lost before a live instance's streams stop counting.
	DefaultExpiryFactor = 3
	// DefaultMaxRemote bounds the memory of the others' counts (~100 MB when full): a
	// million devices streaming on other instances.
	DefaultMaxRemote = 1_000_000
	// DefaultMaxMessageBytes keeps announcements well below NATS's default 1 MB max_payload;
	// it holds ~1500 keys of 40 bytes.
	DefaultMaxMessageBytes = 64 << 10
)

// MaxKeyLen is the longest key announced as given; a longer one is replaced by its namespace,
// "#" and the hex SHA-256 of the id.
const MaxKeyLen = 200

// Key namespaces of the announcements.
const (
	deviceNS = "d."
	tenantNS = "t."
)

// Config sets the limits; 0 turns one off.
type Config struct {
	// PerDevice is the most live streams of one device.
	PerDevice int
	// PerTenant is the most live streams of all devices of one tenant, unless TenantLimit
	// gives the tenant its own. Devices without a tenant (tenant id "") have no tenant limit.
	PerTenant int
	// TenantLimit, when set, returns a tenant's own limit (ok false: PerTenant applies; 0:
	// none). It is called once per Acquire, outside the limiter's lock.
	TenantLimit func(tenantID string) (limit int, ok bool)
}

// Options tunes how a shared Limiter announces and keeps counts; zero values take the
// defaults.
type Options struct {
	// Interval is how often changed counts are announced.
	Interval time.Duration
	// SnapshotInterval is how often all nonzero counts are announced.
	SnapshotInterval time.Duration
	// Expiry is how long an announced count holds without being heard again; at most
	// SnapshotInterval (or 0) means DefaultExpiryFactor × SnapshotInterval.
	Expiry time.Duration
	// MaxRemote caps the announced entries held, over all other instances.
	MaxRemote int
	// MaxMessageBytes caps one announcement (also capped at the connection's max payload);
	// more keys are split over several messages.
	MaxMessageBytes int
	// Now is the clock of the expiry (tests inject one); time.Now when nil.
	Now func() time.Time
}

// Limiter counts the live streams of devices and tenants. It is safe for concurrent use.
type Limiter struct {
	cfg Config
	now func() time.Time

	mu       sync.Mutex
	local    map[string]int // live streams here, by key ("d.<device>", "t.<tenant>")
	noTenant int            // live streams here of devices without a tenant
	// dirty holds the keys whose count changed since the last announcement; kept only while
	// sharing (a connection, not closed).
	dirty   map[string]struct{}
	sharing bool
	remote  remoteTable

	// Sharing, set once by NewShared.
	nc           *nats.Conn
	log          *slog.Logger
	id           instanceID
	interval     time.Duration
	snapshot     time.Duration
	maxMsg       int
	sub          *nats.Subscription
	wantSnapshot atomic.Bool // a hello was heard: announce everything at the next tick
	stop         chan struct{}
	done         chan struct{}
	closeOnce    sync.Once
}

// New returns a limiter of this instance alone, with no streams open.
func New(cfg Config) *Limiter {
	return newLimiter(cfg, nil, Options{})
}

// NewShared returns a limiter whose counts are shared with every other Limiter on nc's NATS
// (see the package comment); with nc nil it is New(cfg). log receives problems of the
// announcements. Close it to stop announcing.
func NewShared(nc *nats.Conn, log *slog.Logger, cfg Config, opts Options) (*Limiter, error) {
	l := newLimiter(cfg, log, opts)
	if nc == nil {
		return l, nil
	}
	l.nc = nc
	// The instance id tells an instance its own announcements, and the others' apart.
	if _, err := rand.Read(l.id[:]); err != nil {
		return nil, fmt.Errorf("streamlimit: instance id: %w", err)
	}
	if mp := int(nc.MaxPayload()); mp > 0 {
		l.maxMsg = max(minMessageBytes, min(l.maxMsg, mp-1024))
	}
	sub, err := nc.Subscribe(bus.StreamsSubject, l.onMessage)
	if err != nil {
		return nil, fmt.Errorf("streamlimit: subscribe %s: %w", bus.StreamsSubject, err)
	}
	l.sub = sub
	l.sharing = true
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	// The server handles the subscription before the hello, so the answers reach it.
	l.publish(encodeSignal(kindHello, l.id))
	go l.loop()
	return l, nil
}

// newLimiter is a limiter with opts' defaults filled in, not sharing.
func newLimiter(cfg Config, log *slog.Logger, opts Options) *Limiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		cfg: cfg, now: opts.Now, local: map[string]int{}, dirty: map[string]struct{}{}, log: log,
		interval: opts.Interval, snapshot: opts.SnapshotInterval, maxMsg: opts.MaxMessageBytes,
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.interval <= 0 {
		l.interval = DefaultInterval
	}
	if l.snapshot <= 0 {
		l.snapshot = DefaultSnapshotInterval
	}
	expiry := opts.Expiry
	if expiry <= l.snapshot {
		expiry = DefaultExpiryFactor * l.snapshot
	}
	maxRemote := opts.MaxRemote
	if maxRemote <= 0 {
		maxRemote = DefaultMaxRemote
	}
	l.remote = newRemoteTable(maxRemote, expiry)
	if l.maxMsg <= 0 {
		l.maxMsg = DefaultMaxMessageBytes
	}
	l.maxMsg = max(l.maxMsg, minMessageBytes)
	return l
}

// Close stops sharing: it announces the last changes, says bye (the others forget this
// instance's counts) and stops listening. Acquire and release keep working afterwards, for
// this instance alone. Close is idempotent; on a limiter that never shared it does nothing.
func (l *Limiter) Close() error {
	if l.nc == nil {
		return nil
	}
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.sharing = false
		l.mu.Unlock()
		close(l.stop)
		<-l.done
		if uerr := l.sub.Unsubscribe(); uerr != nil && !errors.Is(uerr, nats.ErrConnectionClosed) {
			err = fmt.Errorf("streamlimit: %w", uerr)
		}
		l.mu.Lock()
		l.remote = newRemoteTable(l.remote.max, l.remote.expiry)
		l.mu.Unlock()
	})
	return err
}

// deviceCountKey and tenantCountKey are the keys of a device and a tenant in the counts.
func deviceCountKey(key string) string { return nsKey(deviceNS, key) }
func tenantCountKey(id string) string  { return nsKey(tenantNS, id) }

func nsKey(ns, id string) string {
	if len(ns)+len(id) <= MaxKeyLen {
		return ns + id
	}
	sum := sha256.Sum256([]byte(id))
	return ns + "#" + hex.EncodeToString(sum[:])
}

// Acquire admits one more live stream of deviceKey, a device of tenantID ("" for none), or
// refuses it with 429 too_many_streams when the device or the tenant already holds its limit
// on all instances together (as far as this one has heard). The caller must call release
// exactly once when the stream ends (later calls do nothing).
func (l *Limiter) Acquire(deviceKey, tenantID string) (release func(), err error) {
	tenantMax := 0
	if tenantID != "" {
		tenantMax = l.cfg.PerTenant
		if l.cfg.TenantLimit != nil {
			if n, ok := l.cfg.TenantLimit(tenantID); ok {
				tenantMax = n
			}
		}
	}
	dk, tk := deviceCountKey(deviceKey), ""
	if tenantID != "" {
		tk = tenantCountKey(tenantID)
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.PerDevice > 0 && l.local[dk]+l.remote.sum(dk, now) >= l.cfg.PerDevice {
		return nil, apierr.Newf("too_many_streams",
			"this device already has %d live streams (SSE and WebSocket), the most allowed; close one before opening another", l.cfg.PerDevice)
	}
	if tenantMax > 0 && l.local[tk]+l.remote.sum(tk, now) >= tenantMax {
		return nil, apierr.Newf("too_many_streams",
			"the tenant's devices already have %d live streams, the most allowed; close one before opening another", tenantMax)
	}
	l.add(dk, 1)
	if tk != "" {
		l.add(tk, 1)
	} else {
		l.noTenant++
	}
	var once sync.Once
	return func() { once.Do(func() { l.release(dk, tk) }) }, nil
}

func (l *Limiter) release(dk, tk string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.add(dk, -1)
	if tk != "" {
		l.add(tk, -1)
	} else {
		l.noTenant--
	}
}

// add changes key's local count by d and marks it for announcement. l.mu is held.
func (l *Limiter) add(key string, d int) {
	if n := l.local[key] + d; n > 0 {
		l.local[key] = n
	} else {
		delete(l.local, key)
	}
	if l.sharing {
		l.dirty[key] = struct{}{}
	}
}

// Count returns the live streams of tenantID's devices on all instances, as far as this one
// has heard; "" counts the devices without a tenant on this instance alone.
func (l *Limiter) Count(tenantID string) int {
	if tenantID == "" {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.noTenant
	}
	tk := tenantCountKey(tenantID)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.local[tk] + l.remote.sum(tk, now)
}
