// Package bus owns the JetStream contract shared by the three services: stream, bucket and
// consumer names, subject and key layout, and the one encoding of ids into subject tokens.
// It is the Go side of DESIGN.md §2; change a name here and every service follows. Names of
// durable consumers are API: renaming one makes JetStream replay history into a new consumer.
package bus

import (
	"strings"
	"time"
)

// Streams.
const (
	// StreamCommands is the queue of validated commands (lifecycle removes the folded ones), subjects
	// pushgo.cmd.<channel_id>.<event_id>; Nats-Msg-Id = DedupeID.
	StreamCommands = "PUSHGO_COMMANDS"
	// StreamEvents is the event store and audit log, one subject per event:
	// pushgo.evt.<channel_id>.<event_id>. Appends use ExpectLastSequencePerSubject.
	StreamEvents = "PUSHGO_EVENTS"
	// StreamInbox holds per-device inboxes, subjects pushgo.inbox.<device_key>.
	StreamInbox = "PUSHGO_INBOX"
	// StreamOutcomes is the outcome journal (docs/scale.md §2): batches of final op records
	// (busv1.OutcomeBatch) on the one subject OutcomesSubject, kept for the idempotency window,
	// so that a repeat of an op is answered without a KV write per op. See Journal.
	StreamOutcomes = "PUSHGO_OUTCOMES"
	// StreamRetries holds the durable retry schedule of webhook deliveries (DESIGN.md §10.3):
	// per delivery a message schedule on RetryScheduleSubject, which the broker fires at its
	// time onto RetryDueSubject, where ConsumerRetries takes it. A work queue: a due task
	// leaves the stream when acked, a schedule when it fires.
	StreamRetries = "PUSHGO_RETRIES"
	// StreamAttempts holds the attempts of webhook deliveries per device,
	// pushgo.attempts.<device_key> (busv1.DeliveryAttempt), the newest AttemptsPerDevice for
	// AttemptsMaxAge: what POST /channel/device/attempts lists.
	StreamAttempts = "PUSHGO_ATTEMPTS"
)

// Key-value buckets.
const (
	// BucketOps holds op records (idempotency and outcomes) under <channel_id>.<op_id token>.
	BucketOps = "pushgo_ops"
	// BucketChannels holds channel records under <channel_id>.
	BucketChannels = "pushgo_channels"
	// BucketDevices holds device records under <device_key>.
	BucketDevices = "pushgo_devices"
	// BucketSubs holds subscriptions under <channel_id>.<device_key>.
	BucketSubs = "pushgo_subs"
	// BucketTenants holds the tenants of a hosted gateway under tenant.<tenant_id> (TenantKey)
	// and what each owns under count.<tenant_id> (TenantCountKey).
	BucketTenants = "pushgo_tenants"
	// BucketUsage holds per-tenant daily usage under <tenant_id>.<YYYYMMDD> (UsageKey); entries
	// expire after UsageRetention.
	BucketUsage = "pushgo_usage"
)

// Durable consumers. Renaming one replays its stream from the start.
const (
	// ConsumerLifecycle is the one consumer of the commands stream; every lifecycle
	// instance pulls from it, so each command is processed by one instance at a time.
	ConsumerLifecycle = "lifecycle"
	// ConsumerDispatch consumes the event store; every dispatch instance pulls from it.
	ConsumerDispatch = "dispatch"
	// ConsumerRetries consumes the due webhook retries of StreamRetries; every dispatch
	// instance pulls from it.
	ConsumerRetries = "dispatch-retries"
)

// Subject prefixes and wildcards.
const (
	commandPrefix = "pushgo.cmd."
	eventPrefix   = "pushgo.evt."
	inboxPrefix   = "pushgo.inbox."
	retryPrefix   = "pushgo.retry."
	attemptPrefix = "pushgo.attempts."

	// CommandSubjects, EventSubjects and InboxSubjects are the streams' subject filters.
	CommandSubjects = commandPrefix + ">"
	EventSubjects   = eventPrefix + ">"
	InboxSubjects   = inboxPrefix + ">"
	// RetrySubjects, RetryDueSubjects and AttemptSubjects filter StreamRetries, its due tasks
	// and StreamAttempts.
	RetrySubjects    = retryPrefix + ">"
	RetryDueSubjects = retryPrefix + "due.>"
	AttemptSubjects  = attemptPrefix + ">"
	// OutcomesSubject is the outcome journal's one subject: one subject, not one per op, so the
	// broker's memory grows with batches rather than with ops.
	OutcomesSubject = "pushgo.outcomes"
)

// Core NATS (not persisted) subjects.
const (
	// RedriveSubject is where ingest asks dispatch to deliver an op again to the targets that
	// failed (request/reply, one dispatch instance of QueueDispatch answers). A lost request
	// only means the client's retry asks again.
	RedriveSubject = "pushgo.redrive"
	// QueueDispatch is the queue group of dispatch instances on RedriveSubject.
	QueueDispatch = "dispatch"
	// RateLimitSubject is where every ingest instance announces, about every 100 ms, the
	// tokens it took from its rate-limit buckets since its last announcement; every other
	// instance subtracts them from its own buckets, so limits hold across replicas. The
	// payload is the binary encoding of services/ingest/internal/ratelimit (versioned, with
	// the sender's instance id). A lost announcement only makes limits more lenient.
	RateLimitSubject = "pushgo.ratelimit.taken"
	// StreamsSubject is where every ingest instance announces its live streams (SSE and
	// WebSocket) per device and per tenant: every ~100 ms the counts that changed, every 5 s all
	// of them, so stream limits hold across replicas. Counts are absolute (a lost announcement
	// is healed by the next one) and expire when their instance falls silent. The payload is
	// the binary encoding of services/ingest/internal/streamlimit (versioned, with the sender's
	// instance id). A lost announcement only makes limits more lenient for a moment.
	StreamsSubject = "pushgo.streams.live"
	// OutcomeSubjects matches every OutcomeSubject. Dispatch (success, 503) and lifecycle
	// (rejections, repeats) publish an op's final OpRecord on its OutcomeSubject once it is
	// durable (journaled or recorded); every ingest instance subscribes once to OutcomeSubjects
	// and routes by key (OpKeyFromOutcomeSubject) to the requests waiting for it, so no request
	// needs a subscription of its own. Nothing stores a notification: one that is lost lets the
	// waiting request time out, and its repeat is answered from the log and the journal.
	OutcomeSubjects = outcomePrefix + ">"
)

const outcomePrefix = "pushgo.outcome."

// OutcomeSubject is where the final outcome of op opID of channelID is announced (core NATS).
func OutcomeSubject(channelID, opID string) string {
	return outcomePrefix + OpKey(channelID, opID)
}

// OpKeyFromOutcomeSubject returns the op key (OpKey) of a message published on OutcomeSubjects.
func OpKeyFromOutcomeSubject(subject string) string {
	return strings.TrimPrefix(subject, outcomePrefix)
}

// SubsMarkerTTL is how long the marker of an unsubscribe stays in BucketSubs. Dispatch's
// watchers learn of the unsubscribe from it; once it expires the key's subject is gone, so the
// subjects of a channel in the bucket's stream count its subscribers (plus those unsubscribed
// within the TTL), which is how ingest enforces the subscribers-per-channel quota without a
// consumer. A watcher away from the broker for longer than this would miss the unsubscribe.
const SubsMarkerTTL = 10 * time.Minute

// Token encodes an id for use as one subject token or KV key segment. Ids that reach the bus
// are validated to [A-Za-z0-9_:-] first; ':' is not allowed in subjects, so it is escaped. The
// escape is injective: '_' becomes "__" and ':' becomes "_-", everything else is kept, so ids
// without '_' or ':' read the same on the bus.
func Token(id string) string {
	if !strings.ContainsAny(id, "_:") {
		return id
	}
	var b strings.Builder
	b.Grow(len(id) + 4)
	for i := 0; i < len(id); i++ {
		switch c := id[i]; c {
		case '_':
			b.WriteString("__")
		case ':':
			b.WriteString("_-")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// UnToken reverses Token. ok is false for a string Token cannot have produced.
func UnToken(tok string) (id string, ok bool) {
	if !strings.Contains(tok, "_") {
		return tok, true
	}
	var b strings.Builder
	b.Grow(len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(tok) {
			return "", false
		}
		i++
		switch tok[i] {
		case '_':
			b.WriteByte('_')
		case '-':
			b.WriteByte(':')
		default:
			return "", false
		}
	}
	return b.String(), true
}

// CommandSubject is where the command for an op on event eventID of channelID is published.
func CommandSubject(channelID, eventID string) string {
	return commandPrefix + channelID + "." + Token(eventID)
}

// EventSubject is the event store subject of one event: its whole history, head = state.
func EventSubject(channelID, eventID string) string {
	return eventPrefix + channelID + "." + Token(eventID)
}

// ChannelEventSubjects matches every event of one channel.
func ChannelEventSubjects(channelID string) string {
	return eventPrefix + channelID + ".*"
}

// InboxSubject is the inbox of one device.
func InboxSubject(deviceKey string) string {
	return inboxPrefix + deviceKey
}

// RetryScheduleSubject is where the schedule of delivery deliveryID's next attempt lives: one
// per delivery (the broker keeps the last message of a schedule subject only).
func RetryScheduleSubject(deliveryID string) string {
	return retryPrefix + "at." + deliveryID
}

// RetryDueSubject is where the broker puts delivery deliveryID's task when its time comes.
func RetryDueSubject(deliveryID string) string {
	return retryPrefix + "due." + deliveryID
}

// AttemptSubject is where the webhook attempts of device deviceKey are kept.
func AttemptSubject(deviceKey string) string {
	return attemptPrefix + deviceKey
}

// CommandMsgID is the envelope id of a command: <channel_id>:<op_id>:<command_id>, readable in
// the history. DESIGN.md §2 names <channel_id>:<op_id>; the op record's command id is appended so
// that the id follows the idempotency record rather than the op_id alone (the same op_id reused
// after its record expired is a new command). The broker dedupes on DedupeID instead.
func CommandMsgID(channelID, opID, commandID string) string {
	return channelID + ":" + opID + ":" + commandID
}

// EventMsgID is the envelope id of a domain event: one per command, so a retried append of the
// same command is recognised while an op_id reused after the idempotency window is not.
func EventMsgID(channelID, opID, commandID string) string {
	return "evt:" + channelID + ":" + opID + ":" + commandID
}

// DedupeID is the Nats-Msg-Id of a command and of its domain event: the command id alone (32
// random hex digits, minted with the op record), which identifies an op record as uniquely as
// the envelope ids above do. The broker keeps every id of its duplicate window in memory — at
// 5k ops/s that is 600k command ids in the 2 min window — so the short form saves ~80 bytes per
// op held, ~50 MB at that rate. fallback (the envelope id) is used for a message without a
// command id.
func DedupeID(commandID, fallback string) string {
	if commandID == "" {
		return fallback
	}
	return commandID
}

// OpKey is the key of an op record in BucketOps.
func OpKey(channelID, opID string) string {
	return channelID + "." + Token(opID)
}

// KVStream is the name of the stream that holds a key-value bucket.
func KVStream(bucket string) string {
	return "KV_" + bucket
}

// ChannelSubsSubjects matches the subjects of every subscription of one channel in the stream
// of BucketSubs (live ones and unsubscribes younger than SubsMarkerTTL).
func ChannelSubsSubjects(channelID string) string {
	return "$KV." + BucketSubs + "." + channelID + ".*"
}

// TenantKey is the key of a tenant record in BucketTenants; TenantKeys matches them all.
func TenantKey(tenantID string) string { return tenantKeyPrefix + tenantID }

// TenantCountKey is the key of a tenant's counts (channels, devices) in BucketTenants.
func TenantCountKey(tenantID string) string { return "count." + tenantID }

const tenantKeyPrefix = "tenant."

// TenantKeys is the key filter of every tenant record in BucketTenants.
const TenantKeys = tenantKeyPrefix + "*"

// TenantIDFromKey returns the tenant id of a key of TenantKeys.
func TenantIDFromKey(key string) (string, bool) {
	return strings.CutPrefix(key, tenantKeyPrefix)
}

// SubKey is the key of a subscription in BucketSubs.
func SubKey(channelID, deviceKey string) string {
	return channelID + "." + deviceKey
}
