package bus_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// TestProvisionKeepsAWorkQueueCommandsStream: JetStream cannot change a retention policy to or
// from work queue, so a commands stream made by an earlier version must keep its policy
// instead of failing every service's start.
func TestProvisionKeepsAWorkQueueCommandsStream(t *testing.T) {
	t.Parallel()
	s := bustest.RunServer(t)
	js, err := jetstream.New(bustest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: bus.StreamCommands, Subjects: []string{bus.CommandSubjects}, Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(ctx, js, bus.Options{}); err != nil {
		t.Fatalf("provision over a work-queue commands stream: %v", err)
	}
	for name, want := range map[string]jetstream.RetentionPolicy{bus.StreamCommands: jetstream.WorkQueuePolicy, bus.StreamEvents: jetstream.LimitsPolicy} {
		stream, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := stream.CachedInfo().Config.Retention; got != want {
			t.Errorf("%s retention = %v, want %v", name, got, want)
		}
	}

	// A fresh store gets limits retention: lifecycle removes folded commands itself.
	_, _, fresh := bustest.Provisioned(t)
	stream, err := fresh.Stream(ctx, bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	if got := stream.CachedInfo().Config.Retention; got != jetstream.LimitsPolicy {
		t.Errorf("fresh %s retention = %v, want limits", bus.StreamCommands, got)
	}
}
