package bus

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

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
