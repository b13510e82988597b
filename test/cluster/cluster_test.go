package cluster

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/services/lifecycle/audit"
)

// Load and fault parameters (DESIGN: ≥ 2,000 event ops on ≥ 20 channels, ≥ 2 devices each).
const (
	channels     = 20
	minOps       = 2000
	partitions   = 3 // as in deploy/compose.yaml
	suiteTimeout = 10 * time.Minute
	partitionFor = 12 * time.Second
	killedFor    = 5 * time.Second
)

// TestClusterFaults is the fault suite of `make test-cluster`.
func TestClusterFaults(t *testing.T) {
	if os.Getenv("PUSHGO_CLUSTER_SUITE") != "1" {
		t.Skip("the cluster fault suite runs with `make test-cluster` (PUSHGO_CLUSTER_SUITE=1)")
	}
	// Ports are published on 127.0.0.1 only; tell testcontainers to reach them there (it would
	// otherwise derive the daemon's address from its network).
	t.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	testcontainers.SkipIfProviderIsNotHealthy(t)
	// testcontainers' own lines (a dozen per container at teardown) would bury the suite's
	// findings at the end of the output, which is all a CI summary shows.
	tclog.SetDefault(tclog.NewNoopLogger())
	ctx, cancel := context.WithTimeout(t.Context(), suiteTimeout)
	defer cancel()
	began := time.Now()

	c := startCluster(t)
	cl := newClient(c.ingestURLs())
	devices, err := cl.setup(ctx, channels)
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	// Channels in every partition (ids are random: more until each has some).
	layout := bus.NewLayout(partitions)
	perPartition := func() []int {
		n := make([]int, partitions)
		for ch := range devices {
			n[layout.Of(ch)]++
		}
		return n
	}
	for i := 0; slices.Min(perPartition()) < 3 && i < 40; i++ {
		more, err := cl.setup(ctx, 1)
		if err != nil {
			t.Fatalf("setup: %v", err)
		}
		maps.Copy(devices, more)
	}
	var chans []string
	for ch := range devices {
		chans = append(chans, ch)
	}
	t.Logf("cluster up and %d channels (per partition %v) with 2 devices each set up in %s", len(chans), perPartition(), time.Since(began).Round(time.Second))

	// The partitions' log leaders sit on different nodes (lifecycle spreads them).
	var eventLeaders []string
	deadline := time.Now().Add(time.Minute)
	for {
		eventLeaders = eventLeaders[:0]
		for _, s := range layout.EventsStreams() {
			l, err := c.leader(s)
			if err != nil {
				l = "?"
			}
			eventLeaders = append(eventLeaders, l)
		}
		distinct := map[string]bool{}
		for _, l := range eventLeaders {
			distinct[l] = l != "?"
		}
		if len(distinct) == partitions && !slices.Contains(eventLeaders, "?") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leaders of %v are %v after a minute, not on %d different nodes", layout.EventsStreams(), eventLeaders, partitions)
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	t.Logf("log leaders: %v", eventLeaders)
	// Fault 1 kills partition 1's leader: first everything else it leads moves away (the
	// shared streams would stall every partition for an election; see vacate).
	c.vacate(eventLeaders[1], layout.EventsStream(1), layout.CommandsStream(1))

	faultsDone := make(chan struct{})
	loadStart := time.Now()
	loadDone := make(chan []*op, 1)
	go func() { loadDone <- cl.run(ctx, chans, minOps, faultsDone) }()

	// Progress every 2 s, to see where the load stalls.
	go func() {
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				ok, n503, none := cl.progress()
				t.Logf("t=%2.0fs  200s=%d  503s=%d  no-answer=%d", time.Since(loadStart).Seconds(), ok, n503, none)
			case <-faultsDone:
				return
			case <-ctx.Done():
				return
			}
		}
	}()

	// The faults, one after another while the load runs.
	hold := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	hold(3 * time.Second)
	// Fault 1: the leader of one partition's log dies; the other partitions keep taking
	// writes meanwhile.
	killedStream := layout.EventsStream(1)
	leader, err := c.leader(killedStream)
	if err != nil {
		t.Fatalf("leader of %s: %v", killedStream, err)
	}
	if leader != eventLeaders[1] {
		t.Logf("fault 1: %s moved from %s to %s since it was vacated", killedStream, eventLeaders[1], leader)
	}
	t.Logf("fault 1: docker kill %s (leader of %s), restart after %s", leader, killedStream, killedFor)
	killedAt := time.Now()
	c.kill(c.nats[leader])
	hold(killedFor)
	restartAt := time.Now()
	c.start(c.nats[leader])
	answered := make([]int, partitions)
	for _, ch := range chans {
		answered[layout.Of(ch)] += cl.answeredBetween(ch, killedAt, restartAt)
	}
	t.Logf("fault 1: ops answered 200 per partition while %s was down: %v", leader, answered)
	// The other partitions keep taking writes: none may stall outright while the node is
	// down. How many they take is reported, not asserted: in some runs every partition slowed
	// to well below one op a second per channel for the whole outage ([3 1 3], [46 4 72] on
	// 16, 11 and 6 channels), though no leader of theirs was on the killed node; the service
	// instances connected to it were (docs/scale.md, "Known limit: a node's death slows every
	// partition"). A partition sharing the killed node's leaders stalls outright: [8 3 1]
	// before the suite moved them off (vacate).
	for p, n := range answered {
		t.Logf("fault 1: partition %d took %.1f writes per channel in the %s", p, float64(n)/float64(max(perPartition()[p], 1)), killedFor)
		if p != 1 && n == 0 {
			t.Errorf("partition %d (its leaders on other nodes) took no write in the %s %s, the leader of %s, was down",
				p, killedFor, leader, killedStream)
		}
	}
	c.waitHealthy(2 * time.Minute)

	t.Log("fault 2: kill and restart lifecycle replica 1 and dispatch replica 1")
	c.kill(c.life[0])
	c.kill(c.disp[0])
	hold(2 * time.Second)
	c.start(c.life[0])
	c.start(c.disp[0])

	hold(3 * time.Second)
	cut, err := c.leader(bus.StreamCommands)
	if err != nil {
		t.Fatalf("leader of %s: %v", bus.StreamCommands, err)
	}
	t.Logf("fault 3: disconnect %s (leader of %s) from the network for %s", cut, bus.StreamCommands, partitionFor)
	c.disconnect(cut)
	hold(partitionFor)
	c.reconnect(cut)
	c.waitHealthy(2 * time.Minute)
	t.Logf("faults done after %s of load", time.Since(loadStart).Round(time.Second))
	close(faultsDone)

	ops := <-loadDone
	stall := cl.maxStall(loadStart)
	loadTime := time.Since(loadStart)
	t.Logf("load ended after %s", loadTime.Round(time.Second))

	nc, js, err := c.connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := settle(ctx, js, 2*time.Minute); err != nil {
		t.Fatalf("the cluster did not settle: %v", err)
	}
	t.Logf("settled after %s", time.Since(loadStart).Round(time.Second))
	r, err := verify(ctx, nc, ops, devices)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	t.Logf("load: %d ops in %s; %d answers 503 %v, %d attempts without an answer; suite %s",
		r.ops, loadTime.Round(time.Second), cl.answers503, cl.codes503, cl.transport, time.Since(began).Round(time.Second))
	for _, p := range r.problems {
		t.Error(p)
	}
	for _, u := range cl.unexpected {
		t.Errorf("unexpected answer: %s", u)
	}
	for _, o := range ops {
		if !o.acked {
			t.Logf("unacknowledged: %s %s on channel %s event %q", o.route, o.opID, o.channel, o.event)
		}
	}
	if r.acknowledged < minOps {
		t.Errorf("only %d of %d ops were acknowledged", r.acknowledged, r.ops)
	}
	fmt.Fprintf(os.Stdout, "cluster: ops=%d acknowledged=%d lost=%d duplicated_log=%d duplicated_inbox=%d max_stall_s=%.1f\n",
		r.ops, r.acknowledged, r.lost, r.duplicatedLog, r.duplicatedInbox, stall.Seconds())
	auditLog(t, c)
}

// auditLog runs what `pushgo audit verify` runs, with the auditor's credentials, over the
// whole log the faults left: every entry must be signed, chained and refold to what it records.
func auditLog(t *testing.T, c *cluster) {
	nc, err := c.connectAuditor()
	if err != nil {
		t.Fatalf("audit: connect as the auditor: %v", err)
	}
	defer nc.Close()
	_, v, err := logsign.Load("", filepath.Join(c.secrets.dir, string(bus.RoleAuditor), "log-ed25519.pub.pem"))
	if err != nil || v == nil {
		t.Fatalf("audit: log public key: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n, err := bus.StoredPartitions(t.Context(), js)
	if err != nil || n != partitions {
		t.Fatalf("audit: the store records %d partitions (%v), want %d", n, err, partitions)
	}
	layout := bus.NewLayout(n)
	for _, s := range layout.EventsStreams() {
		if err := v.LoadHorizon(t.Context(), js, s); err != nil {
			t.Fatalf("audit: horizon of %s: %v", s, err)
		}
	}
	rep, err := audit.Verify(t.Context(), nc, v, audit.Filter{Layout: layout}, nil)
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	for _, p := range rep.Problems {
		t.Error(p)
	}
	if rep.Broken > 0 || rep.Mismatched > 0 || rep.Unsigned > 0 || rep.OK == 0 {
		t.Errorf("audit verify of the cluster's log: %s", rep.Summary())
	}
	fmt.Fprintln(os.Stdout, "cluster: "+rep.Summary())
}
