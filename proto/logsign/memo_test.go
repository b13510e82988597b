package logsign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"runtime"
	"strings"
	"testing"
	"unsafe"
	"weak"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

func memoKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func memoEntry(status string) *busv1.EventRecorded {
	return &busv1.EventRecorded{
		Envelope: &busv1.Envelope{Id: "m", Type: "event.created", ChannelId: "c", EventId: "e", RecordedAt: 1},
		Route:    "create", Applied: true, Version: 1,
		State: &apiv1.Event{EventId: "e", Status: status},
	}
}

// TestMemoStandsInForTheSignature: bytes the signer sealed are accepted from the memo without
// their signature being checked (a verifier whose key for that id would refuse them accepts
// them), while anything else is verified as without a memo.
func TestMemoStandsInForTheSignature(t *testing.T) {
	t.Parallel()
	_, priv := memoKey(t)
	strangerPub, strangerPriv := memoKey(t)
	memo := NewMemo(0)
	s := NewSigner(priv)
	s.SetMemo(memo)
	sealed, err := s.Seal(memoEntry("running"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A verifier that names the signer's key id but holds another key: only the memo can
	// accept the signer's entries.
	lying := func(m *Memo) *Verifier {
		v := NewVerifier()
		v.keys[s.ID()] = strangerPub
		v.SetMemo(m)
		return v
	}
	if _, err := lying(nil).Open("s", 1, sealed); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("without the memo the entry opened: %v", err)
	}
	e, err := lying(memo).Open("s", 1, sealed)
	if err != nil || !e.Signed || e.Rec.GetState().GetStatus() != "running" {
		t.Fatalf("with the memo: %v, %+v", err, e)
	}

	// What the signer did not seal is checked: an altered copy, and an entry signed with a
	// stranger's key under the signer's id, are broken even with the memo.
	honest := NewVerifier(s.Public())
	honest.SetMemo(memo)
	altered := append([]byte(nil), sealed...)
	altered[10] ^= 1
	if _, err := honest.Open("s", 1, altered); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("an altered entry opened: %v", err)
	}
	forger := NewSigner(strangerPriv)
	forged, err := forger.Seal(memoEntry("forged"), nil)
	if err != nil {
		t.Fatal(err)
	}
	forged = relabel(t, forged, s.ID(), strangerPriv)
	if _, err := honest.Open("s", 2, forged); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("a forged entry opened: %v", err)
	}
	if _, err := honest.Open("s", 1, sealed); err != nil {
		t.Fatalf("the sealed entry: %v", err)
	}
}

// relabel seals rec again with priv but naming key id: a forgery claiming the signer's key.
func relabel(t *testing.T, data []byte, id string, priv ed25519.PrivateKey) []byte {
	t.Helper()
	v := NewVerifier(priv.Public().(ed25519.PublicKey))
	e, err := v.Open("s", 1, data)
	if err != nil {
		t.Fatal(err)
	}
	s := NewSigner(priv)
	s.id = id
	out, err := s.Seal(e.Rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMemoForgetsTheOldest: the memo keeps the last n hashes.
func TestMemoForgetsTheOldest(t *testing.T) {
	t.Parallel()
	m := NewMemo(2)
	a, b, c := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b")), sha256.Sum256([]byte("c"))
	m.add(a)
	m.add(b)
	m.add(b) // already held: no second place
	m.add(c)
	has := func(m *Memo, sum [sha256.Size]byte) bool { _, ok := m.lookup(sum); return ok }
	if has(m, a) || !has(m, b) || !has(m, c) {
		t.Fatalf("after a, b, c in a memo of 2: a %v b %v c %v", has(m, a), has(m, b), has(m, c))
	}
	var none *Memo
	none.add(a)
	if has(none, a) {
		t.Fatal("a nil memo remembers")
	}
}

// TestMemoPlaced: an entry sealed and appended here is Placed when read at exactly the
// subject and sequence of its append, and only then; bytes not sealed here are not made so.
func TestMemoPlaced(t *testing.T) {
	t.Parallel()
	_, priv := memoKey(t)
	memo := NewMemo(0)
	s := NewSigner(priv)
	s.SetMemo(memo)
	v := NewVerifier(s.Public())
	v.SetMemo(memo)
	sealed, err := s.Seal(memoEntry("running"), nil)
	if err != nil {
		t.Fatal(err)
	}
	open := func(subject string, seq uint64, data []byte) *Entry {
		t.Helper()
		e, err := v.Open(subject, seq, data)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := open("pushgo.evt.c.e", 7, sealed); !e.Signed || e.Placed {
		t.Fatalf("sealed, not yet appended: signed %v placed %v", e.Signed, e.Placed)
	}
	s.Appended(sealed, "pushgo.evt.c.e", 7)
	for _, c := range []struct {
		subject string
		seq     uint64
		placed  bool
	}{
		{"pushgo.evt.c.e", 7, true},
		{"pushgo.evt.c.e", 9, false},   // a copy replayed later in the stream
		{"pushgo.evt_1.c.e", 7, false}, // a copy in another partition's stream
	} {
		if e := open(c.subject, c.seq, sealed); !e.Signed || e.Placed != c.placed {
			t.Errorf("%s seq %d: signed %v placed %v, want placed %v", c.subject, c.seq, e.Signed, e.Placed, c.placed)
		}
	}
	other := NewSigner(priv) // the same key, no memo: its entries are verified, never placed
	foreign, err := other.Seal(memoEntry("elsewhere"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Appended(foreign, "pushgo.evt.c.x", 3)
	if e := open("pushgo.evt.c.x", 3, foreign); !e.Signed || e.Placed {
		t.Fatalf("bytes sealed elsewhere: signed %v placed %v", e.Signed, e.Placed)
	}
}

// TestMemoKeepsNoSubject: remembering where an entry was appended allocates nothing per entry
// (only a new generation every n/2, whole) and does not keep the subject's string alive, so
// the memo's heap is a few blocks of its own and no object per entry is scattered over the
// heap (those kept pages from being returned after a burst: the soak of issue 12).
func TestMemoKeepsNoSubject(t *testing.T) {
	const n = 64
	memo := NewMemo(n)
	i := 0
	next := func() {
		i++
		sum := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		memo.add(sum)
		memo.appended(sum, placeOf("pushgo.events.p0.0123456789abcdef0123456789abcdef.0123456789abcdef0123456789abcdef", uint64(i)))
	}
	for range 2 * n {
		next()
	}
	if allocs := testing.AllocsPerRun(100, next); allocs != 0 {
		t.Fatalf("a full memo allocates %.1f times per entry, want none but a generation every n/2", allocs)
	}

	subject := strings.Repeat("s", 80) // on the heap
	alive := weak.Make(unsafe.StringData(subject))
	sum := sha256.Sum256([]byte(subject))
	memo.add(sum)
	memo.appended(sum, placeOf(subject, 1))
	if p, ok := memo.lookup(sum); !ok || p != placeOf(strings.Repeat("s", 80), 1) {
		t.Fatalf("the memo lost the entry's place: %v %v", p, ok)
	}
	runtime.GC() // subject is not used after this point
	if alive.Value() != nil {
		t.Fatal("the memo keeps the subject's string alive")
	}
	runtime.KeepAlive(memo)
}
