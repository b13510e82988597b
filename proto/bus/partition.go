package bus

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxPartitions bounds --partitions. The permission table (Table) names every partition's
// streams and subjects up to it, so one broker configuration serves any partition count.
const MaxPartitions = 16

// MetaPartitions is the metadata key of PUSHGO_EVENTS that records the partition count the
// store was made with. A store without it was made with one partition.
const MetaPartitions = "pushgo_partitions"

// Partition is the partition of channelID among n: FNV-1a (32 bit) of the channel id, mod n.
// It is the one place the split is decided; every publisher and reader goes through it
// (Layout.Of), so a channel's commands and events always meet in the same pair of streams.
func Partition(channelID string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(channelID))
	return int(h.Sum32() % uint32(n))
}

// Layout names the commands and events streams and subjects of a store split into
// partitions (DESIGN.md §12, docs/scale.md §5). Partition 0 keeps the names of a store with
// one partition (PUSHGO_COMMANDS on pushgo.cmd.>, PUSHGO_EVENTS on pushgo.evt.>), so
// --partitions 1 is exactly the layout before partitions existed. Partition p ≥ 1 is
// PUSHGO_COMMANDS_<p> on pushgo.cmd_<p>.> and PUSHGO_EVENTS_<p> on pushgo.evt_<p>.>: streams
// may not share subjects, and the channel stays the second token of every subject. The zero
// Layout has one partition.
type Layout struct{ n int }

// NewLayout returns the layout of n partitions (n < 1: one).
func NewLayout(n int) Layout { return Layout{n: max(n, 1)} }

// Partitions is the number of partitions.
func (l Layout) Partitions() int { return max(l.n, 1) }

// Of is the partition of channelID.
func (l Layout) Of(channelID string) int { return Partition(channelID, l.Partitions()) }

func suffix(p int) string {
	if p == 0 {
		return ""
	}
	return "_" + strconv.Itoa(p)
}

// CommandsStream is the commands stream of partition p.
func (l Layout) CommandsStream(p int) string { return StreamCommands + suffix(p) }

// EventsStream is the events stream (the log) of partition p.
func (l Layout) EventsStream(p int) string { return StreamEvents + suffix(p) }

// CommandsStreams and EventsStreams list every partition's stream, partition 0 first.
func (l Layout) CommandsStreams() []string { return l.names(l.CommandsStream) }

// EventsStreams lists every partition's events stream, partition 0 first.
func (l Layout) EventsStreams() []string { return l.names(l.EventsStream) }

func (l Layout) names(f func(int) string) []string {
	out := make([]string, l.Partitions())
	for p := range out {
		out[p] = f(p)
	}
	return out
}

func commandPrefixOf(p int) string { return "pushgo.cmd" + suffix(p) + "." }
func eventPrefixOf(p int) string   { return "pushgo.evt" + suffix(p) + "." }

// CommandFilter and EventFilter are the subject filters of partition p's streams.
func (l Layout) CommandFilter(p int) string { return commandPrefixOf(p) + ">" }

// EventFilter is the subject filter of partition p's events stream.
func (l Layout) EventFilter(p int) string { return eventPrefixOf(p) + ">" }

// CommandsStreamOf is the commands stream of channelID's partition.
func (l Layout) CommandsStreamOf(channelID string) string { return l.CommandsStream(l.Of(channelID)) }

// EventsStreamOf is the events stream of channelID's partition.
func (l Layout) EventsStreamOf(channelID string) string { return l.EventsStream(l.Of(channelID)) }

// CommandSubject is where the command for an op on event eventID of channelID is published.
func (l Layout) CommandSubject(channelID, eventID string) string {
	return commandPrefixOf(l.Of(channelID)) + channelID + "." + Token(eventID)
}

// EventSubject is the subject of one event in its partition's events stream.
func (l Layout) EventSubject(channelID, eventID string) string {
	return eventPrefixOf(l.Of(channelID)) + channelID + "." + Token(eventID)
}

// ChannelEventSubjects matches every event of one channel, in its partition's events stream.
func (l Layout) ChannelEventSubjects(channelID string) string {
	return eventPrefixOf(l.Of(channelID)) + channelID + ".*"
}

// PartitionsError is a service started with a --partitions other than the store's.
type PartitionsError struct{ Store, Flag int }

func (e *PartitionsError) Error() string {
	return fmt.Sprintf("the store was made with --partitions %d, this service was started with --partitions %d: "+
		"give every service the store's count (moving channels between partitions needs an offline migration, not a flag)", e.Store, e.Flag)
}

// StoredPartitions reads the partition count the store was made with from PUSHGO_EVENTS's
// metadata (1 when it has none: a store made before partitions).
func StoredPartitions(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, StreamEvents)
	if err != nil {
		return 0, err
	}
	return storedPartitions(s.CachedInfo().Config.Metadata), nil
}

// storedPartitions reads MetaPartitions (1 when absent; 0, which matches no layout, when
// malformed).
func storedPartitions(meta map[string]string) int {
	v, ok := meta[MetaPartitions]
	if !ok {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxPartitions {
		return 0
	}
	return n
}

// CheckPartitions returns a *PartitionsError unless the store was made with l's partition count.
func CheckPartitions(ctx context.Context, js jetstream.JetStream, l Layout) error {
	n, err := StoredPartitions(ctx, js)
	if err != nil {
		return fmt.Errorf("read the store's partition count: %w", err)
	}
	if n != l.Partitions() {
		return &PartitionsError{Store: n, Flag: l.Partitions()}
	}
	return nil
}

// PartitionOfEventSubject is the partition of an event subject (pushgo.evt.… is 0,
// pushgo.evt_<p>.… is p); any other subject counts as partition 0.
func PartitionOfEventSubject(subject string) int {
	rest, ok := strings.CutPrefix(subject, "pushgo.evt_")
	if !ok {
		return 0
	}
	num, _, _ := strings.Cut(rest, ".")
	return partitionNumber(num)
}

// PartitionOfEventsStream is the partition of an events stream name (PUSHGO_EVENTS is 0,
// PUSHGO_EVENTS_<p> is p); any other name counts as partition 0.
func PartitionOfEventsStream(stream string) int {
	num, ok := strings.CutPrefix(stream, StreamEvents+"_")
	if !ok {
		return 0
	}
	return partitionNumber(num)
}

func partitionNumber(s string) int {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p >= MaxPartitions {
		return 0
	}
	return p
}

// EventsStreamOfSubject is the events stream that holds an event subject.
func EventsStreamOfSubject(subject string) string {
	return Layout{}.EventsStream(PartitionOfEventSubject(subject))
}
