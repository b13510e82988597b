package logsign_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logsign"
)

func newSigner(t testing.TB) *logsign.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return logsign.NewSigner(priv)
}

func entry(version uint32, applied bool, status string) *busv1.EventRecorded {
	return &busv1.EventRecorded{
		Envelope: &busv1.Envelope{Id: "m", Type: "event.updated", ChannelId: "c", EventId: "e", RecordedAt: 1},
		Route:    "update", Applied: applied, Version: version,
		State: &apiv1.Event{EventId: "e", Status: status},
	}
}

// chain seals n entries of one event (versions 1..n, stored at sequences 1..n) and returns
// their stored bytes.
func chain(t *testing.T, s *logsign.Signer, n int) [][]byte {
	t.Helper()
	var out [][]byte
	var prev *logsign.Entry
	for i := 1; i <= n; i++ {
		data, err := s.Seal(entry(uint32(i), true, "running"), prev)
		if err != nil {
			t.Fatal(err)
		}
		out, prev = append(out, data), &logsign.Entry{Seq: uint64(i), Data: data}
	}
	return out
}

func open(t *testing.T, v *logsign.Verifier, seq uint64, data []byte) (*logsign.Entry, error) {
	t.Helper()
	return v.Open("events.c.e", seq, data)
}

func TestOpen(t *testing.T) {
	t.Parallel()
	s, other := newSigner(t), newSigner(t)
	good := chain(t, s, 1)[0]
	unsigned, _ := proto.Marshal(entry(1, true, "running"))
	flipped := append([]byte(nil), good...)
	flipped[10] ^= 1 // inside the body
	forged, _ := other.Seal(entry(1, true, "FORGED"), nil)
	// A valid signature moved off the end: a field after the authenticator.
	moved := protowire.AppendTag(append([]byte(nil), good...), 2, protowire.BytesType)
	moved = protowire.AppendString(moved, "update")
	// The right key id, the other key's signature.
	rec := entry(1, true, "FORGED")
	data, _ := other.Seal(rec, nil)
	rec.Envelope.KeyId = s.ID()
	rec.Authenticator = nil
	body, _ := proto.Marshal(rec)
	_, sig, _ := splitLast(data)
	wrongSig := protowire.AppendBytes(protowire.AppendTag(body, 11, protowire.BytesType), sig)

	tests := []struct {
		name       string
		data       []byte
		seq        uint64
		signedFrom uint64
		wantSigned bool
		wantErr    bool
	}{
		{"signed", good, 5, 1, true, false},
		{"signed, horizon unknown", good, 5, 0, true, false},
		{"a byte changed", flipped, 5, 1, false, true},
		{"signed by a key not in the ring", forged, 5, 1, false, true},
		{"another key's signature under our key id", wrongSig, 5, 1, false, true},
		{"authenticator not the last field", moved, 5, 1, false, true},
		{"unsigned below the horizon", unsigned, 4, 5, false, false},
		{"unsigned at the horizon", unsigned, 5, 5, false, true},
		{"unsigned, horizon unknown", unsigned, 1, 0, false, true},
		{"garbage", []byte{0xff, 0xff, 0xff}, 5, 1, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := logsign.NewVerifier(s.Public())
			v.SetSignedFrom(tt.signedFrom)
			e, err := open(t, v, tt.seq, tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, logsign.ErrIntegrity) || v.Failures() != 1 {
					t.Fatalf("err %v (failures %d): want an integrity error, counted", err, v.Failures())
				}
				return
			}
			if e.Signed != tt.wantSigned {
				t.Fatalf("signed = %v, want %v", e.Signed, tt.wantSigned)
			}
		})
	}
}

// splitLast returns the body and the bytes of the last field's value.
func splitLast(data []byte) ([]byte, []byte, bool) {
	for i := 0; i < len(data); {
		num, typ, n := protowire.ConsumeTag(data[i:])
		m := protowire.ConsumeFieldValue(num, typ, data[i+n:])
		if i+n+m == len(data) {
			v, _ := protowire.ConsumeBytes(data[i+n:])
			return data[:i], v, true
		}
		i += n + m
	}
	return nil, nil, false
}

func TestFollows(t *testing.T) {
	t.Parallel()
	s := newSigner(t)
	c := chain(t, s, 4)
	head := &logsign.Entry{Seq: 4, Data: c[3]}
	late, _ := s.Seal(entry(4, false, "running"), head) // a late update keeps the version
	jump, _ := s.Seal(entry(6, true, "running"), head)
	v := logsign.NewVerifier(s.Public())
	v.SetSignedFrom(1)
	at := func(i int, data []byte) *logsign.Entry {
		e, err := open(t, v, uint64(i), data)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	tests := []struct {
		name       string
		prev, next *logsign.Entry
		wantErr    bool
	}{
		{"first entry", nil, at(1, c[0]), false},
		{"next entry", at(1, c[0]), at(2, c[1]), false},
		{"late update", at(4, c[3]), at(5, late), false},
		{"first entry missing", nil, at(2, c[1]), true},
		{"middle entry missing", at(2, c[1]), at(4, c[3]), true},
		{"an old entry replayed after the head", at(4, c[3]), at(9, c[1]), true},
		{"version jump", at(4, c[3]), at(5, jump), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Follows(tt.prev, tt.next)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Follows = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, logsign.ErrIntegrity) {
				t.Fatalf("%v is not an integrity error", err)
			}
		})
	}
}

// TestRotation: entries of an old key still open once a new key signs, as long as its public
// key stays in the ring; a ring without it refuses them.
func TestRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newSigner(t), newSigner(t)
	a, b := chain(t, oldKey, 1)[0], chain(t, newKey, 1)[0]
	both := logsign.NewVerifier(oldKey.Public(), newKey.Public())
	for i, data := range [][]byte{a, b} {
		if _, err := open(t, both, uint64(i+1), data); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if _, err := open(t, logsign.NewVerifier(newKey.Public()), 1, a); err == nil {
		t.Fatal("an entry of a key dropped from the ring opened")
	}
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	priv, pub, err := logsign.EnsureKeyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := logsign.LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := logsign.LoadPublicKeys(pub + "," + priv)
	if err != nil || len(keys) != 2 || logsign.KeyID(keys[0]) != s.ID() || logsign.KeyID(keys[1]) != s.ID() {
		t.Fatalf("public keys %v, %v; want twice %s", keys, err, s.ID())
	}
	again, _, err := logsign.EnsureKeyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := logsign.LoadSigner(again); err != nil || s2.ID() != s.ID() {
		t.Fatalf("second EnsureKeyPair made a new key (%v)", err)
	}
	if _, err := logsign.LoadSigner(pub); err == nil {
		t.Fatal("a public key loaded as a signer")
	}
}

func TestNilVerifierChecksNothing(t *testing.T) {
	t.Parallel()
	var v *logsign.Verifier
	unsigned, _ := proto.Marshal(entry(3, true, "running"))
	e, err := v.Open("s", 1, unsigned)
	if err != nil || e.Signed || e.Rec.GetVersion() != 3 {
		t.Fatalf("nil verifier: %v, %+v", err, e)
	}
	if err := v.Follows(nil, e); err != nil {
		t.Fatal(err)
	}
}
