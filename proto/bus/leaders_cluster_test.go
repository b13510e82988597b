package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// runLeaderCluster starts a 3-node JetStream cluster (bustest.RunCluster) and returns a
// JetStream client of n0.
func runLeaderCluster(t *testing.T) jetstream.JetStream {
	t.Helper()
	servers := bustest.RunCluster(t, "leaders")
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// settledLeaders returns the leader of each stream once every stream has a leader and all its
// replicas are current and online, and false until then.
func settledLeaders(t *testing.T, js jetstream.JetStream, names []string) (map[string]string, bool) {
	leaders := map[string]string{}
	for _, name := range names {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		s, err := js.Stream(ctx, name)
		cancel()
		if err != nil {
			return nil, false
		}
		ci := s.CachedInfo().Cluster
		if ci == nil || ci.Leader == "" || len(ci.Replicas) != 2 {
			return nil, false
		}
		for _, p := range ci.Replicas {
			if !p.Current || p.Offline {
				return nil, false
			}
		}
		leaders[name] = ci.Leader
	}
	return leaders, true
}

// waitSettledLeaders polls settledLeaders until it holds (and cond, when given, holds of the
// leaders) and returns the leaders.
func waitSettledLeaders(t *testing.T, js jetstream.JetStream, names []string, what string, cond func(map[string]string) bool) map[string]string {
	t.Helper()
	var leaders map[string]string
	bustest.Eventually(t, 15*time.Second, what, func() bool {
		l, ok := settledLeaders(t, js, names)
		if ok && (cond == nil || cond(l)) {
			leaders = l
			return true
		}
		return false
	})
	return leaders
}

// leadAllFrom moves the leader of every stream to the node that leads stream from
// (bus.FollowLeader) until that node leads them all.
func leadAllFrom(t *testing.T, js jetstream.JetStream, names []string, from string) {
	t.Helper()
	for _, name := range names {
		for attempt := 0; ; attempt++ {
			leaders := waitSettledLeaders(t, js, names, "settled leaders", nil)
			old, target := leaders[name], leaders[from]
			if old == target {
				break
			}
			if attempt == 5 {
				t.Fatalf("%s still led by %s after %d step-downs to %s", name, old, attempt, target)
			}
			if _, err := bus.FollowLeader(t.Context(), js, name, from); err != nil {
				t.Logf("step down %s to %s: %v", name, target, err)
			}
			waitSettledLeaders(t, js, names, "a new leader of "+name, func(l map[string]string) bool { return l[name] != old })
		}
	}
}

func distinctLeaders(leaders map[string]string) bool {
	seen := map[string]bool{}
	for _, l := range leaders {
		if seen[l] {
			return false
		}
		seen[l] = true
	}
	return true
}

// createLeaderStreams creates the R3 streams T_0, T_1 and T_2 once the cluster can place them.
func createLeaderStreams(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var names []string
	for i := range 3 {
		name := fmt.Sprintf("T_%d", i)
		names = append(names, name)
		cfg := jetstream.StreamConfig{Name: name, Subjects: []string{fmt.Sprintf("t%d.>", i)}, Replicas: 3}
		var err error
		bustest.Eventually(t, 30*time.Second, "creating "+name, func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			_, err = js.CreateStream(ctx, cfg)
			return err == nil
		})
	}
	return names
}

// TestSpreadLeaders forces the leaders of three R3 streams of a 3-node cluster onto one node and
// checks that a few SpreadLeaders steps put them on three nodes, after which it does nothing;
// then piles them up again and checks that KeepLeadersSpread spreads them.
func TestSpreadLeaders(t *testing.T) {
	js := runLeaderCluster(t)
	names := createLeaderStreams(t, js)
	// A stream that does not exist is skipped.
	listed := append([]string{"T_missing"}, names...)

	leadAllFrom(t, js, names, "T_0")

	moves := 0
	for calls := 1; ; calls++ {
		before := waitSettledLeaders(t, js, names, "settled leaders", nil)
		moved, err := bus.SpreadLeaders(t.Context(), js, listed)
		if err != nil {
			t.Fatalf("SpreadLeaders call %d (leaders %v): %v", calls, before, err)
		}
		if moved == "" {
			break
		}
		moves++
		t.Logf("call %d moved %s from %s", calls, moved, before[moved])
		if calls == 10 {
			t.Fatalf("still moving leaders after %d calls", calls)
		}
		waitSettledLeaders(t, js, names, "a new leader of "+moved, func(l map[string]string) bool { return l[moved] != before[moved] })
	}
	leaders := waitSettledLeaders(t, js, names, "settled leaders", nil)
	if !distinctLeaders(leaders) {
		t.Fatalf("leaders after %d moves: %v, want three nodes", moves, leaders)
	}
	if moved, err := bus.SpreadLeaders(t.Context(), js, listed); err != nil || moved != "" {
		t.Fatalf("SpreadLeaders when balanced (%v) = %q, %v; want \"\", nil", leaders, moved, err)
	}
	t.Logf("spread in %d moves: %v", moves, leaders)

	// FollowLeader moves one stream's leader to another's node, then has nothing to do.
	if ok, err := bus.FollowLeader(t.Context(), js, "T_2", "T_0"); err != nil || !ok {
		t.Fatalf("FollowLeader(T_2, T_0) with leaders %v = %v, %v", leaders, ok, err)
	}
	leaders = waitSettledLeaders(t, js, names, "T_2 led where T_0 is", func(l map[string]string) bool { return l["T_2"] == l["T_0"] })
	if ok, err := bus.FollowLeader(t.Context(), js, "T_2", "T_0"); err != nil || ok {
		t.Fatalf("FollowLeader when already together (%v) = %v, %v", leaders, ok, err)
	}

	// The loop does the same on its own, and returns when its context ends.
	leadAllFrom(t, js, names, "T_1")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		bus.KeepLeadersSpread(ctx, js, listed, 20*time.Millisecond, slog.New(slog.NewTextHandler(t.Output(), nil)))
	}()
	waitSettledLeaders(t, js, names, "KeepLeadersSpread to spread the leaders", distinctLeaders)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("KeepLeadersSpread did not return after its context ended")
	}
}
