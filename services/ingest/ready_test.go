package ingest

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// TestReadyNamesAPartitionMismatch: an ingest instance with another --partitions than its
// store's stays unready, and says why; with the store's count it is ready.
func TestReadyNamesAPartitionMismatch(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	nc := bustest.Connect(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(t.Context(), js, bus.Options{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	var pe *bus.PartitionsError
	if err := ready(nc, js, bus.NewLayout(1))(t.Context()); !errors.As(err, &pe) || pe.Store != 3 || pe.Flag != 1 {
		t.Fatalf("ready with 1 partition on a 3-partition store: %v", err)
	}
	if err := ready(nc, js, bus.NewLayout(3))(t.Context()); err != nil {
		t.Fatalf("ready with the store's count: %v", err)
	}
}
