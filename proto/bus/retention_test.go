package bus_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// TestProvisionEventsRetention: the event store's retention is lengthened (or made for ever)
// silently, but shortened only with ConfirmShorterRetention; Provision never deletes history
// on its own.
func TestProvisionEventsRetention(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	tests := []struct {
		name    string
		first   time.Duration // the existing store's EventsMaxAge
		next    time.Duration
		confirm bool
		want    time.Duration // the stream's MaxAge afterwards (0: no limit)
		refused bool
	}{
		{name: "default is 30 days", first: 0, next: 0, want: bus.DefaultEventsMaxAge},
		{name: "forever is no max age", first: bus.EventsForever, next: bus.EventsForever, want: 0},
		{name: "lengthen applied", first: 10 * day, next: 20 * day, want: 20 * day},
		{name: "lengthen to forever applied", first: 10 * day, next: bus.EventsForever, want: 0},
		{name: "equal applied", first: 10 * day, next: 10 * day, want: 10 * day},
		{name: "shorten refused", first: 10 * day, next: day, want: 10 * day, refused: true},
		{name: "forever to a limit refused", first: bus.EventsForever, next: 0, want: 0, refused: true},
		{name: "shorten with confirmation applied", first: 10 * day, next: day, confirm: true, want: day},
		{name: "forever to a limit with confirmation applied", first: bus.EventsForever, next: 5 * day, confirm: true, want: 5 * day},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := bustest.RunServer(t)
			js, err := jetstream.New(bustest.Connect(t, s))
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if err := bus.Provision(ctx, js, bus.Options{EventsMaxAge: tt.first}); err != nil {
				t.Fatalf("first provision: %v", err)
			}
			start := time.Now()
			err = bus.Provision(ctx, js, bus.Options{EventsMaxAge: tt.next, ConfirmShorterRetention: tt.confirm})
			var re *bus.RetentionError
			switch {
			case tt.refused && !errors.As(err, &re):
				t.Fatalf("second provision = %v, want a *RetentionError", err)
			case tt.refused && !strings.Contains(err.Error(), "--confirm-shorter-retention"):
				t.Fatalf("refusal %q does not name --confirm-shorter-retention", err)
			case tt.refused && time.Since(start) > 5*time.Second:
				t.Fatalf("refusal took %s: it must not be retried", time.Since(start))
			case !tt.refused && err != nil:
				t.Fatalf("second provision: %v", err)
			}
			st, err := js.Stream(ctx, bus.StreamEvents)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.CachedInfo().Config.MaxAge; got != tt.want {
				t.Fatalf("events MaxAge = %s, want %s", got, tt.want)
			}
		})
	}
}
