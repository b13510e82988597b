package bus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SpreadLeaders makes one balancing step over streams: when a stream's leader node leads c ≥ 2 of
// them while one of that stream's current, online replicas leads at most c-2, it asks that
// stream's leader to step down in favour of the replica leading fewest (ties by server name), and
// returns the stream's name; the first such stream in the given order moves. It returns "" when
// the leaders are balanced or no single move improves them.
//
// Why: with --partitions N the commands and events are split over N R3 streams so that write
// capacity grows with nodes, but every write of a stream goes through its leader, so that only
// holds when the leaders sit on different nodes. JetStream elects leaders at random, and a node
// that restarts comes back leading nothing, so leaders pile up on the nodes that stayed up.
//
// Cost: a graceful step-down stalls that stream's writes for about 0.25 s (252 ms measured, no
// errors; "Measured numbers" in ../shared/reference/jetstream.md), so it moves as little as it can.
//
// It makes at most one step-down per call and decides only from what the streams report, so it is
// idempotent and several processes may run it at once: each step strictly evens the leader counts
// out; balancers that see the same leaders pick the same move, and the later one's request fails
// harmlessly (the preferred server is already leader); one acting on a stale view at worst makes a
// move that the next steps undo, so concurrent balancers converge.
//
// Streams that do not exist, have no cluster information or no leader, or have a single replica
// are skipped. The step-down goes to $JS.API.STREAM.LEADER.STEPDOWN.<stream> with a preferred
// placement (nats-server 2.11+), under js's API prefix or domain.
func SpreadLeaders(ctx context.Context, js jetstream.JetStream, streams []string) (moved string, err error) {
	infos := make([]*jetstream.StreamInfo, 0, len(streams))
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("stream %s info: %w", name, err)
		}
		// js.Stream has just fetched the info; asking again with Info would double the requests.
		infos = append(infos, s.CachedInfo())
	}
	stream, preferred := chooseStepDown(infos)
	if stream == "" {
		return "", nil
	}
	if err := stepDownLeader(ctx, js, stream, preferred); err != nil {
		return "", err
	}
	return stream, nil
}

// KeepLeadersSpread runs SpreadLeaders over streams every `every` (give or take a quarter, so
// that balancers in several processes do not act in lockstep) until ctx ends. It logs each move
// (Info) and each error (Warn) and keeps going after errors. A non-positive every means a minute.
func KeepLeadersSpread(ctx context.Context, js jetstream.JetStream, streams []string, every time.Duration, log *slog.Logger) {
	keepLeaders(ctx, every, log, func(ctx context.Context) (string, error) { return SpreadLeaders(ctx, js, streams) })
}

// keepLeaders runs step (one move at most, naming the stream moved) until ctx ends: soon
// after start and after each move (once the new leader is elected), then every `every`
// (give or take a quarter). It logs each move (Info) and each error (Warn) and keeps going
// after errors. A non-positive every means a minute.
func keepLeaders(ctx context.Context, every time.Duration, log *slog.Logger, step func(context.Context) (string, error)) {
	if every <= 0 {
		every = time.Minute
	}
	if log == nil {
		log = slog.Default()
	}
	soon := min(every, spreadSettle)
	t := time.NewTimer(jittered(soon))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		moved, err := step(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("placing stream leaders", "err", err)
		case moved != "":
			log.Info("stream leader stepped down to place leaders over nodes", "stream", moved)
			t.Reset(jittered(soon))
			continue
		}
		t.Reset(jittered(every))
	}
}

// FollowLeader makes one step towards stream being led by the node that leads target: when
// they differ and that node is a current replica of stream, stream's leader steps down in its
// favour. It returns whether it moved. A partition's commands stream follows its events
// stream this way, so that a partition's writes go through one node and a node that dies
// stalls the partition it leads, not two.
func FollowLeader(ctx context.Context, js jetstream.JetStream, stream, target string) (bool, error) {
	want, err := leaderOf(ctx, js, target)
	if err != nil || want == "" {
		return false, err
	}
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stream %s info: %w", stream, err)
	}
	cl := s.CachedInfo().Cluster
	if cl == nil || cl.Leader == "" || cl.Leader == want {
		return false, nil
	}
	for _, r := range cl.Replicas {
		if r.Name == want && r.Current && !r.Offline {
			return true, stepDownLeader(ctx, js, stream, want)
		}
	}
	return false, nil
}

// leaderOf is the node that leads stream ("" when it has none or does not exist).
func leaderOf(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("stream %s info: %w", stream, err)
	}
	if cl := s.CachedInfo().Cluster; cl != nil {
		return cl.Leader, nil
	}
	return "", nil
}

// KeepPartitionLeaders places the leaders of l's partitions until ctx ends: the events
// streams' leaders on different nodes (SpreadLeaders), and each commands stream's leader on
// its partition's events leader (FollowLeader). One move per round, as KeepLeadersSpread.
func KeepPartitionLeaders(ctx context.Context, js jetstream.JetStream, l Layout, every time.Duration, log *slog.Logger) {
	keepLeaders(ctx, every, log, func(ctx context.Context) (string, error) {
		moved, err := SpreadLeaders(ctx, js, l.EventsStreams())
		for p := 0; err == nil && moved == "" && p < l.Partitions(); p++ {
			var ok bool
			if ok, err = FollowLeader(ctx, js, l.CommandsStream(p), l.EventsStream(p)); ok {
				moved = l.CommandsStream(p)
			}
		}
		return moved, err
	})
}

// spreadSettle is how long KeepLeadersSpread waits after a move (and after start) before it
// looks again: a step-down elects the new leader within a second or two.
const spreadSettle = 3 * time.Second

// jittered returns d give or take a quarter, at random.
func jittered(d time.Duration) time.Duration {
	if d < 4 {
		return d
	}
	return d - d/4 + rand.N(d/2)
}

// chooseStepDown picks the one step-down of SpreadLeaders from the infos of the streams, in the
// caller's order (nil entries are streams that do not exist): the stream whose leader to step down
// and the preferred new leader, or "", "" when no single move improves the spread.
//
// Only streams with a leader and at least one replica count. A stream can move to a replica that
// is current, online and not still joining. The first stream (in order) whose leader node leads
// c ≥ 2 streams and that has such a replica leading fewer than c-1 moves to the one leading
// fewest (ties by name). Each move takes one from a count and gives one to a count at least two
// smaller, so the sum of squared counts falls and repeated steps end.
func chooseStepDown(infos []*jetstream.StreamInfo) (stream, preferred string) {
	type candidate struct {
		stream, leader string
		replicas       []string
	}
	var streams []candidate
	leads := map[string]int{}
	for _, info := range infos {
		if info == nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) == 0 || info.Config.Replicas == 1 {
			continue
		}
		c := candidate{stream: info.Config.Name, leader: info.Cluster.Leader}
		for _, p := range info.Cluster.Replicas {
			if p != nil && p.Current && !p.Offline && !p.Pending && p.Name != "" && p.Name != c.leader {
				c.replicas = append(c.replicas, p.Name)
			}
		}
		leads[c.leader]++
		streams = append(streams, c)
	}
	for _, c := range streams {
		n := leads[c.leader]
		if n < 2 || len(c.replicas) == 0 {
			continue
		}
		best := slices.MinFunc(c.replicas, func(a, b string) int {
			return cmp.Or(cmp.Compare(leads[a], leads[b]), strings.Compare(a, b))
		})
		if leads[best] < n-1 {
			return c.stream, best
		}
	}
	return "", ""
}

// stepDownLeader asks the leader of stream to step down in favour of the server named preferred.
func stepDownLeader(ctx context.Context, js jetstream.JetStream, stream, preferred string) error {
	body, err := json.Marshal(map[string]any{"placement": map[string]string{"preferred": preferred}})
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		timeout := js.Options().DefaultTimeout
		if timeout <= 0 {
			timeout = 5 * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, jsAPIPrefix(js)+"STREAM.LEADER.STEPDOWN."+stream, body)
	if err != nil {
		return fmt.Errorf("stream %s leader step-down to %s: %w", stream, preferred, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Success bool `json:"success"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("stream %s leader step-down to %s: bad response %q: %w", stream, preferred, msg.Data, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("stream %s leader step-down to %s: %s (err_code %d)", stream, preferred, resp.Error.Description, resp.Error.ErrCode)
	}
	if !resp.Success {
		return fmt.Errorf("stream %s leader step-down to %s: not confirmed: %q", stream, preferred, msg.Data)
	}
	return nil
}

// jsAPIPrefix is the JetStream API prefix js sends its requests under, ending in a dot.
func jsAPIPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	default:
		return jetstream.DefaultAPIPrefix
	}
}
