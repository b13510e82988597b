package bus_test

import (
	"errors"
	"fmt"
	"testing"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

func TestReads(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	ctx := t.Context()
	const ch = "06J0FZG1Y8XGG14VTQ4Y3G10MR"
	// 3 events with 1, 2 and 300 messages: the last exceeds one history batch.
	counts := map[string]int{"e1": 1, "e:2": 2, "e3": 300}
	for ev, n := range counts {
		for i := range n {
			_, err := js.Publish(ctx, bus.EventSubject(ch, ev), fmt.Appendf(nil, "%s/%d", ev, i))
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	last, err := bus.LastMsg(ctx, nc, bus.StreamEvents, bus.EventSubject(ch, "e:2"))
	if err != nil || string(last.Data) != "e:2/1" {
		t.Fatalf("LastMsg = %v, %v; want e:2/1", last, err)
	}
	if _, err := bus.LastMsg(ctx, nc, bus.StreamEvents, bus.EventSubject(ch, "nope")); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("LastMsg of an empty subject: %v, want ErrNotFound", err)
	}
	direct, err := bus.DirectLastMsg(ctx, nc, bus.StreamEvents, bus.EventSubject(ch, "e:2"))
	if err != nil || string(direct.Data) != "e:2/1" || direct.Seq != last.Seq || direct.Subject != last.Subject {
		t.Fatalf("DirectLastMsg = %+v, %v; want %+v", direct, err, last)
	}
	if _, err := bus.DirectLastMsg(ctx, nc, bus.StreamEvents, bus.EventSubject(ch, "nope")); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("DirectLastMsg of an empty subject: %v, want ErrNotFound", err)
	}
	var ranged []string
	err = bus.LeaderRange(ctx, nc, bus.StreamEvents, bus.EventSubject(ch, "e3"), 1, 5, func(m *bus.Msg) error {
		ranged = append(ranged, string(m.Data))
		return nil
	})
	if err != nil || len(ranged) != 5 || ranged[4] != "e3/4" {
		t.Fatalf("LeaderRange = %v, %v", ranged, err)
	}

	var got []string
	err = bus.History(ctx, nc, bus.StreamEvents, bus.EventSubject(ch, "e3"), 1, func(m *bus.Msg) error {
		got = append(got, string(m.Data))
		return nil
	})
	if err != nil || len(got) != 300 || got[0] != "e3/0" || got[299] != "e3/299" {
		t.Fatalf("History: %d msgs (first %v), err %v", len(got), got[:min(1, len(got))], err)
	}

	heads := map[string]string{}
	err = bus.LastPerSubject(ctx, nc, js, bus.StreamEvents, bus.ChannelEventSubjects(ch), func(m *bus.Msg) error {
		heads[m.Subject] = string(m.Data)
		return nil
	})
	if err != nil || len(heads) != 3 || heads[bus.EventSubject(ch, "e3")] != "e3/299" {
		t.Fatalf("LastPerSubject = %v, %v", heads, err)
	}
}

func TestLastPerSubjectBeyondOneAnswer(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	ctx := t.Context()
	const ch = "06J0FZG1Y8XGG14VTQ4Y3G10MR"
	const n = 1100 // the server answers at most 1024 subjects per multi-last request
	for i := range n {
		js.PublishAsync(bus.EventSubject(ch, fmt.Sprint("e", i)), []byte("x"))
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	seen := 0
	err := bus.LastPerSubject(ctx, nc, js, bus.StreamEvents, bus.ChannelEventSubjects(ch), func(*bus.Msg) error {
		seen++
		return nil
	})
	if err != nil || seen != n {
		t.Fatalf("LastPerSubject saw %d of %d, err %v", seen, n, err)
	}
}
