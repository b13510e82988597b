package bus

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// leaderInfo builds the info of an R(1+len(replicas)) stream led by leader. A replica is a server
// name, current and online, or the name followed by "!" (offline), "~" (not current) or "+"
// (pending).
func leaderInfo(name, leader string, replicas ...string) *jetstream.StreamInfo {
	ci := &jetstream.ClusterInfo{Name: "c", Leader: leader}
	for _, r := range replicas {
		p := &jetstream.PeerInfo{Name: strings.TrimRight(r, "!~+"), Current: true}
		switch {
		case strings.HasSuffix(r, "!"):
			p.Current, p.Offline = false, true
		case strings.HasSuffix(r, "~"):
			p.Current = false
		case strings.HasSuffix(r, "+"):
			p.Pending = true
		}
		ci.Replicas = append(ci.Replicas, p)
	}
	return &jetstream.StreamInfo{Config: jetstream.StreamConfig{Name: name, Replicas: 1 + len(replicas)}, Cluster: ci}
}

func TestChooseStepDown(t *testing.T) {
	for _, tc := range []struct {
		name              string
		infos             []*jetstream.StreamInfo
		stream, preferred string
	}{
		{"empty", nil, "", ""},
		{"balanced", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "b", "c"), leaderInfo("T_1", "b", "a", "c"), leaderInfo("T_2", "c", "a", "b"),
		}, "", ""},
		{"all on one node moves the first to the lightest, ties by name", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "c", "b"), leaderInfo("T_1", "a", "c", "b"), leaderInfo("T_2", "a", "c", "b"),
		}, "T_0", "b"},
		{"second step of all on one node", []*jetstream.StreamInfo{
			leaderInfo("T_0", "b", "a", "c"), leaderInfo("T_1", "a", "b", "c"), leaderInfo("T_2", "a", "b", "c"),
		}, "T_1", "c"},
		{"offline candidate not chosen", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "b!", "c"), leaderInfo("T_1", "a", "b!", "c"), leaderInfo("T_2", "c", "a", "b!"),
		}, "", ""},
		{"offline candidate skipped for an online one", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "b!", "c"), leaderInfo("T_1", "a", "b!", "c"), leaderInfo("T_2", "a", "b!", "c"),
		}, "T_0", "c"},
		{"lagging candidate not chosen", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "b~", "c~"), leaderInfo("T_1", "a", "b~", "c"), leaderInfo("T_2", "a", "b", "c"),
		}, "T_1", "c"},
		{"pending candidate not chosen", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "b+"), leaderInfo("T_1", "a", "b+"),
		}, "", ""},
		{"R1 skipped", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a"), leaderInfo("T_1", "a"), leaderInfo("T_2", "a"),
		}, "", ""},
		{"R1 does not count as a leader", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a"), leaderInfo("T_1", "a", "b", "c"), leaderInfo("T_2", "b", "a", "c"),
		}, "", ""},
		{"missing, without cluster info or leader skipped", []*jetstream.StreamInfo{
			nil,
			{Config: jetstream.StreamConfig{Name: "T_1", Replicas: 3}},
			leaderInfo("T_2", "", "a", "b"),
			leaderInfo("T_3", "a", "b", "c"),
		}, "", ""},
		{"2 streams on 3 nodes already fine", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "b", "c"), leaderInfo("T_1", "b", "a", "c"),
		}, "", ""},
		{"2 streams on one node", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "b", "c"), leaderInfo("T_1", "a", "b", "c"),
		}, "T_0", "b"},
		{"4 streams 2-1-1 cannot improve", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "b", "c"), leaderInfo("T_1", "a", "b", "c"),
			leaderInfo("T_2", "b", "a", "c"), leaderInfo("T_3", "c", "a", "b"),
		}, "", ""},
		{"only a replica two below helps", []*jetstream.StreamInfo{
			leaderInfo("T_0", "a", "b", "c"), leaderInfo("T_1", "a", "b", "d"),
			leaderInfo("T_2", "b", "a", "c"), leaderInfo("T_3", "c", "a", "b"),
		}, "T_1", "d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, preferred := chooseStepDown(tc.infos)
			if stream != tc.stream || preferred != tc.preferred {
				t.Fatalf("chooseStepDown = %q, %q; want %q, %q", stream, preferred, tc.stream, tc.preferred)
			}
		})
	}
}

// TestChooseStepDownConverges applies the chosen moves to random placements until none is left:
// it ends within a bound, with leader counts at most one apart when every node may lead every
// stream.
func TestChooseStepDownConverges(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	nodes := []string{"a", "b", "c", "d", "e"}
	for range 200 {
		n := 1 + r.IntN(len(nodes))
		ns := nodes[:n]
		leaders := make([]string, 1+r.IntN(12))
		for i := range leaders {
			leaders[i] = ns[r.IntN(n)]
		}
		infos := func() []*jetstream.StreamInfo {
			var out []*jetstream.StreamInfo
			for i, l := range leaders {
				var reps []string
				for _, x := range ns {
					if x != l {
						reps = append(reps, x)
					}
				}
				out = append(out, leaderInfo(fmt.Sprintf("T_%d", i), l, reps...))
			}
			return out
		}
		for step := 0; ; step++ {
			if step > len(leaders)*len(leaders) {
				t.Fatalf("no convergence from %v", leaders)
			}
			stream, preferred := chooseStepDown(infos())
			if stream == "" {
				break
			}
			var i int
			fmt.Sscanf(stream, "T_%d", &i)
			leaders[i] = preferred
		}
		counts := map[string]int{}
		for _, l := range leaders {
			counts[l]++
		}
		lo, hi := len(leaders), 0
		for _, x := range ns {
			lo, hi = min(lo, counts[x]), max(hi, counts[x])
		}
		if hi-lo > 1 {
			t.Fatalf("ended unbalanced on %d nodes: %v", n, counts)
		}
	}
}

// leadersEventually polls cond every 5 ms until it holds, failing the test when d passes first
// (bustest.Eventually, which this package's own tests cannot import).
func leadersEventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-tb.Context().Done():
			tb.Fatal(tb.Context().Err())
		}
	}
}

// runLeaderCluster starts a 3-node JetStream cluster of embedded servers (n0, n1, n2) on
// loopback, routed to each other, shut down when the test ends, and returns a JetStream client
// of n0.
func runLeaderCluster(t *testing.T) jetstream.JetStream {
	t.Helper()
	// Routes need the cluster ports up front: take three free ones.
	var ports []int
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	var servers []*server.Server
	for i, p := range ports {
		var routes []string
		for j, q := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", q))
			}
		}
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "leaders", Host: "127.0.0.1", Port: p},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			t.Fatalf("new nats server: %v", err)
		}
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		go s.Start()
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s not ready after 10s", s.Name())
		}
	}
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
	leadersEventually(t, 15*time.Second, what, func() bool {
		l, ok := settledLeaders(t, js, names)
		if ok && (cond == nil || cond(l)) {
			leaders = l
			return true
		}
		return false
	})
	return leaders
}

// leadAllFrom steps the leader of every stream down in favour of target until target leads them
// all.
func leadAllFrom(t *testing.T, js jetstream.JetStream, names []string, target string) {
	t.Helper()
	for _, name := range names {
		for attempt := 0; ; attempt++ {
			leaders := waitSettledLeaders(t, js, names, "settled leaders", nil)
			old := leaders[name]
			if old == target {
				break
			}
			if attempt == 5 {
				t.Fatalf("%s still led by %s after %d step-downs to %s", name, old, attempt, target)
			}
			if err := stepDownLeader(t.Context(), js, name, target); err != nil {
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
		leadersEventually(t, 30*time.Second, "creating "+name, func() bool {
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

	target := waitSettledLeaders(t, js, names, "settled leaders", nil)["T_0"]
	leadAllFrom(t, js, names, target)

	moves := 0
	for calls := 1; ; calls++ {
		before := waitSettledLeaders(t, js, names, "settled leaders", nil)
		moved, err := SpreadLeaders(t.Context(), js, listed)
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
	if moved, err := SpreadLeaders(t.Context(), js, listed); err != nil || moved != "" {
		t.Fatalf("SpreadLeaders when balanced (%v) = %q, %v; want \"\", nil", leaders, moved, err)
	}
	t.Logf("spread in %d moves: %v", moves, leaders)

	// FollowLeader moves one stream's leader to another's node, then has nothing to do.
	if ok, err := FollowLeader(t.Context(), js, "T_2", "T_0"); err != nil || !ok {
		t.Fatalf("FollowLeader(T_2, T_0) with leaders %v = %v, %v", leaders, ok, err)
	}
	leaders = waitSettledLeaders(t, js, names, "T_2 led where T_0 is", func(l map[string]string) bool { return l["T_2"] == l["T_0"] })
	if ok, err := FollowLeader(t.Context(), js, "T_2", "T_0"); err != nil || ok {
		t.Fatalf("FollowLeader when already together (%v) = %v, %v", leaders, ok, err)
	}

	// The loop does the same on its own, and returns when its context ends.
	leadAllFrom(t, js, names, leaders["T_1"])
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		KeepLeadersSpread(ctx, js, listed, 20*time.Millisecond, slog.New(slog.NewTextHandler(t.Output(), nil)))
	}()
	waitSettledLeaders(t, js, names, "KeepLeadersSpread to spread the leaders", distinctLeaders)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("KeepLeadersSpread did not return after its context ended")
	}
}
