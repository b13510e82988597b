package bus_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// TestPartitionIsStable pins the hash: a channel's partition is where its history lives, so
// the function may never change for a store already made.
func TestPartitionIsStable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		channel string
		n, want int
	}{
		{"83B9X3WMHDBSTH6HYWPYRK3RK4", 1, 0},
		// Expected values computed with an independent FNV-1a (Python).
		{"83B9X3WMHDBSTH6HYWPYRK3RK4", 3, 0},
		{"M8THJZ86SKC3T6BZ0EYTM4MACR", 3, 1},
		{"TT6BE5Z6VXVH4B7NVC21QFRJQ0", 3, 2},
		{"A5GDDJQ5E8ARVDANB6GADHHJH0", 16, 5},
		{"", 3, 1},
	} {
		if got := bus.Partition(c.channel, c.n); got != c.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", c.channel, c.n, got, c.want)
		}
	}
}

// TestPartitionSpreadsChannels: channel ids spread evenly enough that each partition's leader
// carries its share.
func TestPartitionSpreadsChannels(t *testing.T) {
	t.Parallel()
	const channels, n = 3000, 3
	var count [n]int
	for i := range channels {
		count[bus.Partition(fmt.Sprintf("CH%024d", i), n)]++
	}
	for p, c := range count {
		if c < channels/n*8/10 || c > channels/n*12/10 {
			t.Errorf("partition %d got %d of %d channels: %v", p, c, channels, count)
		}
	}
}

func TestLayoutNames(t *testing.T) {
	t.Parallel()
	one := bus.NewLayout(1)
	if one.CommandsStream(0) != bus.StreamCommands || one.EventsStream(0) != bus.StreamEvents ||
		one.CommandSubject("C", "e") != bus.CommandSubject("C", "e") || one.EventSubject("C", "e") != bus.EventSubject("C", "e") ||
		one.ChannelEventSubjects("C") != bus.ChannelEventSubjects("C") || one.EventFilter(0) != bus.EventSubjects {
		t.Fatal("one partition must keep the names of a store made before partitions")
	}
	l := bus.NewLayout(3)
	const ch = "TT6BE5Z6VXVH4B7NVC21QFRJQ0" // partition 2 of 3
	for _, c := range []struct{ got, want string }{
		{l.CommandsStreamOf(ch), "PUSHGO_COMMANDS_2"},
		{l.EventsStreamOf(ch), "PUSHGO_EVENTS_2"},
		{l.CommandSubject(ch, "ev_1"), "pushgo.cmd_2." + ch + ".ev__1"},
		{l.EventSubject(ch, "ev"), "pushgo.evt_2." + ch + ".ev"},
		{l.ChannelEventSubjects(ch), "pushgo.evt_2." + ch + ".*"},
		{l.EventFilter(1), "pushgo.evt_1.>"},
		{l.CommandFilter(0), "pushgo.cmd.>"},
		{bus.EventsStreamOfSubject(l.EventSubject(ch, "ev")), "PUSHGO_EVENTS_2"},
		{bus.EventsStreamOfSubject(bus.EventSubject(ch, "ev")), "PUSHGO_EVENTS"},
		{bus.EventsStreamOfSubject("pushgo.evt_99.x.y"), "PUSHGO_EVENTS"}, // beyond MaxPartitions: not a partition
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if got := bus.PartitionOfEventsStream("PUSHGO_EVENTS_2"); got != 2 {
		t.Errorf("PartitionOfEventsStream(PUSHGO_EVENTS_2) = %d", got)
	}
}

// TestProvisionPartitions: a store made with 3 partitions has a commands and an events stream
// per partition and records its count; a service with another count is refused, and so is
// one with 3 against a store made before partitions.
func TestProvisionPartitions(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	js, err := jetstream.New(bustest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	three := bus.Options{Partitions: 3}
	if err := bus.Provision(ctx, js, three); err != nil {
		t.Fatal(err)
	}
	l := three.Layout()
	for p := range 3 {
		for name, filter := range map[string]string{l.CommandsStream(p): l.CommandFilter(p), l.EventsStream(p): l.EventFilter(p)} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			if got := s.CachedInfo().Config.Subjects; len(got) != 1 || got[0] != filter {
				t.Errorf("%s subjects %v, want %s", name, got, filter)
			}
		}
	}
	if n, err := bus.StoredPartitions(ctx, js); err != nil || n != 3 {
		t.Fatalf("StoredPartitions = %d, %v", n, err)
	}
	if err := bus.CheckPartitions(ctx, js, l); err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(ctx, js, three); err != nil {
		t.Fatalf("provisioning again with the same count: %v", err)
	}
	var pe *bus.PartitionsError
	if err := bus.Provision(ctx, js, bus.Options{Partitions: 2}); !errors.As(err, &pe) || pe.Store != 3 || pe.Flag != 2 {
		t.Fatalf("provisioning a 3-partition store with 2: %v", err)
	}
	if err := bus.CheckPartitions(ctx, js, bus.NewLayout(1)); !errors.As(err, &pe) {
		t.Fatalf("CheckPartitions with 1 against 3: %v", err)
	}

	// A store made before partitions has no count recorded: it is one partition.
	_, _, legacy := bustest.Provisioned(t)
	if err := bus.CheckPartitions(ctx, legacy, bus.NewLayout(1)); err != nil {
		t.Fatal(err)
	}
	s, err := legacy.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	delete(cfg.Metadata, bus.MetaPartitions)
	if _, err := legacy.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if n, err := bus.StoredPartitions(ctx, legacy); err != nil || n != 1 {
		t.Fatalf("a store without a recorded count: %d, %v", n, err)
	}
	if err := bus.Provision(ctx, legacy, bus.Options{}); err != nil {
		t.Fatalf("a store made before partitions, provisioned with one: %v", err)
	}
	if err := bus.Provision(ctx, legacy, three); !errors.As(err, &pe) || pe.Store != 1 {
		t.Fatalf("a store made before partitions, provisioned with 3: %v", err)
	}
}
