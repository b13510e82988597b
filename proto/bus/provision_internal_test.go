package bus

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestProvisionAgainChangesNothing: once provisioned, every stream's configuration as the
// server reports it already has what provisioning sets, so provisioning again (every service
// start) sends no update: an update racing a consumer's creation trips a data race inside
// nats-server.
func TestProvisionAgainChangesNothing(t *testing.T) {
	t.Parallel()
	ns, err := server.NewServer(&server.Options{Port: -1, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10e9) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Partitions: 2, EventsCreateMetadata: func(stream string) map[string]string {
		return map[string]string{"test_horizon": stream}
	}}
	if err := Provision(t.Context(), js, o); err != nil {
		t.Fatal(err)
	}
	for _, want := range StreamConfigs(o) {
		s, err := js.Stream(t.Context(), want.Name)
		if err != nil {
			t.Fatal(err)
		}
		have := s.CachedInfo().Config
		if isEvents(want.Name) && have.Metadata["test_horizon"] != want.Name {
			t.Errorf("%s was created without its creation metadata: %v", want.Name, have.Metadata)
		}
		want.Metadata = have.Metadata
		if !sameStreamConfig(want, have) {
			t.Errorf("%s: provisioning again would update it:\nwant %+v\nhave %+v", want.Name, want, have)
		}
	}
}
