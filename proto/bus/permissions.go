package bus

import (
	"fmt"
	"slices"
	"strings"
)

// Role is a NATS user of the gateway (DESIGN.md §9.1): one per service, and the auditor.
type Role string

// The roles. Each service connects as its own role; pushgo serve's in-process connections do too.
const (
	RoleIngest    Role = "ingest"
	RoleLifecycle Role = "lifecycle"
	RoleDispatch  Role = "dispatch"
	// RoleAuditor reads PUSHGO_EVENTS and nothing else (pushgo audit, nats CLI).
	RoleAuditor Role = "auditor"
)

// Roles lists every role, in the order of the README's permission table.
var Roles = []Role{RoleIngest, RoleLifecycle, RoleDispatch, RoleAuditor}

// InboxPrefix is the reply-subject prefix of a role's connections (nats.CustomInboxPrefix): each
// role may subscribe only under its own, so no role sees another's replies (KV reads, stream
// gets, publish acks).
func InboxPrefix(r Role) string { return "_INBOX_" + string(r) }

// Permissions is what one role may do on the broker: core NATS publish and subscribe subject
// lists (deny wins over allow, as in NATS), and whether it may answer requests it received
// (allow_responses). JetStream is reached through subjects too: $JS.API.<verb>.<stream> for the
// API, $KV.<bucket>.<key> for key-value writes, $JS.ACK.<stream>.<consumer>.… for acks.
type Permissions struct {
	Role Role
	// Does is a one-line summary for the README.
	Does           string
	Publish        []string
	PublishDeny    []string
	Subscribe      []string
	SubscribeDeny  []string
	AllowResponses bool
	// Provisions are the streams (a bucket's is KV_<bucket>) this role creates and updates at
	// start; Needs those it waits for, made by another role. See ProvisionRole.
	Provisions []string
	Needs      []string
}

const jsAPI = "$JS.API."

// streamAdmin: create, update and read the configuration of a stream the role owns.
func streamAdmin(stream string) []string {
	return []string{jsAPI + "STREAM.CREATE." + stream, jsAPI + "STREAM.UPDATE." + stream, jsAPI + "STREAM.INFO." + stream}
}

// streamRead: stream info (with subject lists), leader gets and direct gets of one stream.
func streamRead(stream string) []string {
	return []string{jsAPI + "STREAM.INFO." + stream, jsAPI + "STREAM.MSG.GET." + stream,
		jsAPI + "DIRECT.GET." + stream, jsAPI + "DIRECT.GET." + stream + ".>"}
}

// durable: use one named durable pull consumer of a stream: create or update it, read its
// info, pull, and ack/nak/term/in-progress its messages.
func durable(stream, name string) []string {
	c := stream + "." + name
	return []string{jsAPI + "CONSUMER.CREATE." + c, jsAPI + "CONSUMER.CREATE." + c + ".>",
		jsAPI + "CONSUMER.INFO." + c, jsAPI + "CONSUMER.MSG.NEXT." + c, "$JS.ACK." + c + ".>"}
}

// kvRead: get keys of a bucket (leader or direct get) and watch it. A watch is an ordered push
// consumer: ephemeral create, delete on reset, and flow-control replies.
func kvRead(bucket string) []string {
	s := KVStream(bucket)
	return append(streamRead(s), jsAPI+"CONSUMER.CREATE."+s, jsAPI+"CONSUMER.CREATE."+s+".>",
		jsAPI+"CONSUMER.DELETE."+s+".>", jsAPI+"CONSUMER.INFO."+s+".>", "$JS.FC."+s+".>")
}

// kvWrite: put, create, update, delete and purge keys of a bucket.
func kvWrite(bucket string) string { return "$KV." + bucket + ".>" }

// inbox is the reply subject space of a role.
func inbox(r Role) string { return InboxPrefix(r) + ".>" }

// jsInfo is the account info request ($JS.API.INFO): limits and counts, no data.
const jsInfo = jsAPI + "INFO"

// ingestBuckets are the buckets ingest owns: it creates them and writes them.
var ingestBuckets = []string{BucketOps, BucketChannels, BucketDevices, BucketSubs, BucketTenants, BucketUsage}

// Table is the permission table of DESIGN.md §9.1, derived from what each service does on the
// bus (the README shows it, rendered by PermissionsMarkdown; the broker is configured from it by
// ServerConfigUsers and natsauth). Who provisions what: lifecycle the log (PUSHGO_EVENTS), which
// it alone appends to; dispatch the outcome journal (PUSHGO_OUTCOMES), which it alone appends
// to; ingest everything else (PUSHGO_COMMANDS, PUSHGO_INBOX, whose items it deletes, and every
// bucket). Provisioning is creating and updating a
// stream's configuration, so no other role can lift the log's DenyDelete or shorten its MaxAge.
// Ingest needs nothing to start (its readiness waits for the log); lifecycle and dispatch wait
// for what they need (ProvisionRole).
//
// No role but lifecycle and dispatch may create consumers on the log, and those only their own
// durable by name: a push consumer's deliver subject is not checked against its creator's
// permissions by NATS (server/consumer.go checks only that it is literal and not the stream's
// own), so a consumer could copy a stream into another's subjects. For the same reason the
// auditor reads with direct and leader gets only (batched direct gets stream the log with
// bounded memory), never with a consumer. The KV watches of ingest and dispatch are ordered push
// consumers on bucket streams, which the same limitation applies to; §9.2's authenticator is
// what detects a forged log entry.
//
// The rows name the streams and subjects of MaxPartitions partitions (TableFor), so one broker
// configuration serves a store of any partition count.
func Table() []Permissions { return TableFor(MaxPartitions) }

// TableFor is Table for a store of n partitions.
func TableFor(n int) []Permissions {
	l := NewLayout(n)
	var (
		cmdSubjects, evtSubjects      []string
		cmdStreams, evtStreams        []string
		ingestJS, lifecycleJS, dispJS []string
		auditJS                       []string
	)
	for p := range l.Partitions() {
		cmds, events := l.CommandsStream(p), l.EventsStream(p)
		cmdSubjects, evtSubjects = append(cmdSubjects, l.CommandFilter(p)), append(evtSubjects, l.EventFilter(p))
		cmdStreams, evtStreams = append(cmdStreams, cmds), append(evtStreams, events)
		ingestJS = slices.Concat(ingestJS, streamAdmin(cmds), streamRead(events))
		lifecycleJS = slices.Concat(lifecycleJS, streamAdmin(events), streamRead(events),
			[]string{jsAPI + "STREAM.INFO." + cmds, jsAPI + "STREAM.PURGE." + cmds},
			[]string{jsAPI + "STREAM.LEADER.STEPDOWN." + events, jsAPI + "STREAM.LEADER.STEPDOWN." + cmds},
			durable(cmds, ConsumerLifecycle))
		dispJS = slices.Concat(dispJS, streamRead(events), durable(events, ConsumerDispatch))
		auditJS = slices.Concat(auditJS, streamRead(events))
	}
	return []Permissions{{
		Role: RoleIngest,
		Does: "publishes commands, owns and writes every bucket, reads the log and the inboxes, deletes acknowledged inbox items",
		Publish: slices.Concat(
			[]string{jsInfo}, cmdSubjects, []string{RateLimitSubject, StreamsSubject, RedriveSubject},
			ingestJS,
			streamAdmin(StreamInbox), streamRead(StreamInbox), []string{jsAPI + "STREAM.MSG.DELETE." + StreamInbox},
			streamRead(StreamAttempts),
			bucketsAdminReadWrite(ingestBuckets),
		),
		Subscribe:  []string{inbox(RoleIngest), OutcomeSubjects, RateLimitSubject, StreamsSubject, InboxSubjects},
		Provisions: slices.Concat(cmdStreams, []string{StreamInbox}, kvStreams(ingestBuckets)),
	}, {
		Role: RoleLifecycle,
		Does: "consumes commands (its durable), appends to the log, removes folded commands, spreads the log's leaders over the nodes, answers rejections and repeats (reads 503 records and the outcome journal)",
		Publish: slices.Concat(
			[]string{jsInfo}, evtSubjects, []string{OutcomeSubjects},
			lifecycleJS,
			kvRead(BucketOps),
			streamRead(StreamOutcomes),
		),
		Subscribe:  []string{inbox(RoleLifecycle)},
		Provisions: evtStreams,
		// Not StreamOutcomes: lifecycle runs without dispatch, and a journal not made yet holds
		// nothing (LookupOutcome).
		Needs: slices.Concat(cmdStreams, []string{KVStream(BucketOps)}),
	}, {
		Role: RoleDispatch,
		Does: "consumes the log (its durable), appends to inboxes, records, journals (owns PUSHGO_OUTCOMES) and announces outcomes, reads devices and subscriptions, marks a device's dead provider token, answers redrive requests, schedules and makes webhook retries (owns PUSHGO_RETRIES and PUSHGO_ATTEMPTS)",
		Publish: slices.Concat(
			[]string{jsInfo, InboxSubjects, jsAPI + "STREAM.INFO." + StreamInbox, OutcomesSubject, OutcomeSubjects},
			streamAdmin(StreamOutcomes), streamRead(StreamOutcomes),
			[]string{retryPrefix + "at.>", AttemptSubjects}, streamAdmin(StreamRetries), durable(StreamRetries, ConsumerRetries),
			streamAdmin(StreamAttempts),
			dispJS,
			kvRead(BucketOps), []string{kvWrite(BucketOps)},
			kvRead(BucketUsage), []string{kvWrite(BucketUsage)},
			kvRead(BucketSubs), kvRead(BucketDevices), []string{kvWrite(BucketDevices)},
		),
		Subscribe:      []string{inbox(RoleDispatch), RedriveSubject},
		AllowResponses: true,
		Provisions:     []string{StreamOutcomes, StreamRetries, StreamAttempts},
		Needs:          slices.Concat(evtStreams, []string{StreamInbox, KVStream(BucketOps), KVStream(BucketUsage), KVStream(BucketSubs), KVStream(BucketDevices)}),
	}, {
		Role:      RoleAuditor,
		Does:      "reads the log (PUSHGO_EVENTS and its partitions) with stream info, leader and direct gets; nothing else",
		Publish:   slices.Concat([]string{jsInfo}, auditJS),
		Subscribe: []string{inbox(RoleAuditor)},
	}}
}

func bucketsAdminReadWrite(buckets []string) []string {
	var out []string
	for _, b := range buckets {
		out = append(out, streamAdmin(KVStream(b))...)
		out = append(out, kvRead(b)...)
		out = append(out, kvWrite(b))
	}
	return dedupe(out)
}

func kvStreams(buckets []string) []string {
	out := make([]string, len(buckets))
	for i, b := range buckets {
		out[i] = KVStream(b)
	}
	return out
}

// dedupe keeps the first of each subject.
func dedupe(subjects []string) []string {
	seen := map[string]bool{}
	out := subjects[:0:0]
	for _, s := range subjects {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// PermissionsOf returns the row of role r of Table.
func PermissionsOf(r Role) (Permissions, bool) { return permissionsIn(Table(), r) }

func permissionsIn(table []Permissions, r Role) (Permissions, bool) {
	for _, p := range table {
		if p.Role == r {
			p.Publish, p.Subscribe = dedupe(p.Publish), dedupe(p.Subscribe)
			return p, true
		}
	}
	return Permissions{}, false
}

// PermissionsMarkdown renders Table as the README's permission table.
func PermissionsMarkdown() string {
	var b strings.Builder
	b.WriteString("| role | what it does | may publish to | may subscribe to | answers requests |\n")
	b.WriteString("|---|---|---|---|---|\n")
	code := func(ss []string) string {
		if len(ss) == 0 {
			return "—"
		}
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = "`" + s + "`"
		}
		return strings.Join(q, " ")
	}
	table := TableFor(1)
	for _, r := range Roles {
		p, _ := permissionsIn(table, r)
		resp := "no"
		if p.AllowResponses {
			resp = "yes"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", p.Role, p.Does, code(p.Publish), code(p.Subscribe), resp)
	}
	return b.String()
}

// User is one NATS user of a generated broker configuration.
type User struct {
	Name string
	// Password is the plain password, or a bcrypt hash ("$2a$…"), which nats-server accepts in
	// its configuration file.
	Password string
	// Role is the row of Table that gives the user's permissions; "" gives full access (the
	// admin user of a deployment, used by operators' tools and the cluster test suite only).
	Role Role
}

// ServerConfigUsers renders the authorization block of a nats-server configuration file for
// users, with each role's permissions from Table.
func ServerConfigUsers(users []User) (string, error) {
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	list := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	for _, u := range users {
		fmt.Fprintf(&b, "    {user: %q, password: %q", u.Name, u.Password)
		if u.Role != "" {
			p, ok := PermissionsOf(u.Role)
			if !ok {
				return "", fmt.Errorf("user %s: unknown role %q", u.Name, u.Role)
			}
			fmt.Fprintf(&b, ",\n     permissions: {\n       publish: {allow: %s", list(p.Publish))
			if len(p.PublishDeny) > 0 {
				fmt.Fprintf(&b, ", deny: %s", list(p.PublishDeny))
			}
			fmt.Fprintf(&b, "}\n       subscribe: {allow: %s", list(p.Subscribe))
			if len(p.SubscribeDeny) > 0 {
				fmt.Fprintf(&b, ", deny: %s", list(p.SubscribeDeny))
			}
			b.WriteString("}\n")
			if p.AllowResponses {
				b.WriteString("       allow_responses: true\n")
			}
			b.WriteString("     }")
		}
		b.WriteString("}\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}
