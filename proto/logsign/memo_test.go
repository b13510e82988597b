package logsign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

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
	if m.has(a) || !m.has(b) || !m.has(c) {
		t.Fatalf("after a, b, c in a memo of 2: a %v b %v c %v", m.has(a), m.has(b), m.has(c))
	}
	var none *Memo
	none.add(a)
	if none.has(a) {
		t.Fatal("a nil memo remembers")
	}
}
