package logsign_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/proto/logsign"
)

// TestCheckPlace: against a real stream, the genuine chain checks out; an old entry
// republished after the head, an entry whose predecessor was deleted, and the first entry
// republished are found.
func TestCheckPlace(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	nc := bustest.Connect(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	s := newSigner(t)
	v := logsign.NewVerifier(s.Public())
	v.SetSignedFrom(1)
	direct := logsign.NewVerifier(s.Public()) // the same checks with direct gets (an R1 stream)
	direct.SetSignedFrom(1)
	direct.SetDirect(true)
	const subj = "t.e"
	publish := func(data []byte) *logsign.Entry {
		t.Helper()
		ack, err := js.Publish(t.Context(), subj, data)
		if err != nil {
			t.Fatal(err)
		}
		e, err := v.Open(subj, ack.Sequence, data)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// Another event's entries interleave, as in the real stream.
	if _, err := js.Publish(t.Context(), "t.other", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var c []*logsign.Entry
	for i := 1; i <= 4; i++ {
		var prev *logsign.Entry
		if len(c) > 0 {
			prev = c[len(c)-1]
		}
		data, err := s.Seal(entry(uint32(i), true, "running"), prev)
		if err != nil {
			t.Fatal(err)
		}
		c = append(c, publish(data))
		if _, err := js.Publish(t.Context(), "t.other", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range c {
		if err := v.CheckPlace(t.Context(), nc, "T", e, nil); err != nil {
			t.Fatalf("genuine entry %d: %v", i+1, err)
		}
		if err := direct.CheckPlace(t.Context(), nc, "T", e, nil); err != nil {
			t.Fatalf("genuine entry %d, direct gets: %v", i+1, err)
		}
	}
	broken := func(what string, e *logsign.Entry) {
		t.Helper()
		for _, v := range []*logsign.Verifier{v, direct} {
			if err := v.CheckPlace(t.Context(), nc, "T", e, nil); !errors.Is(err, logsign.ErrIntegrity) {
				t.Fatalf("%s: CheckPlace = %v, want an integrity error", what, err)
			}
		}
	}
	// A read that does not see the entry being checked (a server behind the log, right after
	// a leader change) proves nothing: transient, not an integrity failure. Here version 5
	// is sealed and opened, but not stored yet where its place is read.
	ahead, err := s.Seal(entry(5, true, "running"), c[3])
	if err != nil {
		t.Fatal(err)
	}
	unseen, err := v.Open(subj, c[3].Seq+10, ahead)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*logsign.Verifier{v, direct} {
		err := v.CheckPlace(t.Context(), nc, "T", unseen, nil)
		if !errors.Is(err, logsign.ErrStaleRead) || errors.Is(err, logsign.ErrIntegrity) || !bus.Transient(err) {
			t.Fatalf("an entry the read does not see yet: CheckPlace = %v, want a transient stale read", err)
		}
	}
	// A reader that remembers the entries it saw: it saw versions 1–3, another instance took
	// version 4, and then a copy of version 4 comes: it names version 3, which the reader
	// holds, yet version 4 lies between them.
	recent := logsign.NewRecent(8)
	for i, e := range c[:3] {
		if err := recent.Check(t.Context(), v, nc, "T", e); err != nil {
			t.Fatalf("Recent, genuine entry %d: %v", i+1, err)
		}
	}
	if err := recent.Check(t.Context(), v, nc, "T", publish(c[3].Data)); !errors.Is(err, logsign.ErrIntegrity) {
		t.Fatalf("Recent, a copy of version 4 after version 4: %v, want an integrity error", err)
	}
	// With a memo shared with the signer (pushgo serve), the entry its conditional append
	// placed is taken as placed (nothing is read: a stream that does not exist would fail the
	// read), while a copy of the same bytes replayed later is still checked, and caught.
	memo := logsign.NewMemo(0)
	ms := s
	ms.SetMemo(memo)
	mv := logsign.NewVerifier(s.Public())
	mv.SetSignedFrom(1)
	mv.SetMemo(memo)
	last, err := bus.LastMsg(t.Context(), nc, "T", subj) // the copy of version 4 published above
	if err != nil {
		t.Fatal(err)
	}
	head, err := v.Open(subj, last.Seq, last.Data)
	if err != nil {
		t.Fatal(err)
	}
	fifth, err := ms.Seal(entry(5, true, "running"), head)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(t.Context(), subj, fifth, jetstream.WithExpectLastSequencePerSubject(head.Seq))
	if err != nil {
		t.Fatal(err)
	}
	ms.Appended(fifth, subj, ack.Sequence)
	placed, err := mv.Open(subj, ack.Sequence, fifth)
	if err != nil || !placed.Placed {
		t.Fatalf("the appended entry: %v, placed %v", err, placed != nil && placed.Placed)
	}
	if err := mv.CheckPlace(t.Context(), nc, "NO_SUCH_STREAM", placed, nil); err != nil {
		t.Fatalf("CheckPlace of a placed entry read the stream: %v", err)
	}
	copied := publish(fifth)
	again, err := mv.Open(subj, copied.Seq, fifth)
	if err != nil || again.Placed {
		t.Fatalf("a replayed copy: %v, placed %v", err, again != nil && again.Placed)
	}
	if err := mv.CheckPlace(t.Context(), nc, "T", again, nil); !errors.Is(err, logsign.ErrIntegrity) {
		t.Fatalf("a replayed copy of a placed entry: CheckPlace = %v, want an integrity error", err)
	}
	broken("version 2 republished after the head", publish(c[1].Data))
	broken("version 1 republished after the head", publish(c[0].Data))
	st, err := js.Stream(t.Context(), "T")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(t.Context(), c[1].Seq); err != nil {
		t.Fatal(err)
	}
	broken("version 3 after version 2 was deleted", c[2])
	if err := v.CheckPlace(t.Context(), nc, "T", c[3], nil); err != nil {
		t.Fatalf("version 4 (its own predecessor is there): %v", err)
	}
	// Everything up to version 2 gone, as the retention expires the oldest messages: version
	// 3 is now the oldest entry held, and stands.
	for seq := uint64(1); seq < c[1].Seq; seq++ {
		if err := st.DeleteMsg(t.Context(), seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.CheckPlace(t.Context(), nc, "T", c[2], nil); err != nil {
		t.Fatalf("version 3 after the older entries expired: %v", err)
	}
	if err := v.Starts(c[2], c[2].Seq); err != nil {
		t.Fatalf("Starts after expiry: %v", err)
	}
	if err := v.Starts(c[2], c[1].Seq); err == nil {
		t.Fatal("Starts accepted an entry whose predecessor is within the stream")
	}
}
