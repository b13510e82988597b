// Package logsign makes the event log tamper-evident (DESIGN.md §9.2). Every domain event that
// lifecycle appends to PUSHGO_EVENTS carries the SHA-256 of the stored bytes of the previous
// entry of the same event (prev_hash: a chain per event) and an Ed25519 signature over its own
// stored bytes (the authenticator), made with the log key that only lifecycle holds. Every
// reader opens entries with a Verifier before it folds, pushes or answers them.
//
// Ed25519 rather than an HMAC: the readers (ingest, dispatch, auditors) need only the public
// keys, so none of them can forge an entry; with an HMAC every verifier could. It costs more
// CPU per op (one signature, one verification per reader); docs/benchmarks.md states how much.
//
// What is signed is exactly what is stored: the marshalled EventRecorded without its
// authenticator, which the signer appends as the message's last field. A verifier cuts that
// last field off and checks the signature over the rest, so nothing depends on re-marshalling
// being canonical, and fields added by later versions are covered as they were written.
//
// Keys rotate: a key's id (the envelope's key_id) is the first 8 bytes of the SHA-256 of its
// public key in hex; a new key signs new entries and the old public keys stay in the ring.
//
// Entries written before the log was signed have no authenticator. The stream's metadata
// holds, signed by a log key, the first stream sequence from which every entry must be signed
// (the horizon, set by lifecycle when it first signs a store); an unsigned entry below it is
// reported Unsigned, not broken, and one at or above it is broken.
package logsign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/metrics"
)

// fieldAuthenticator is EventRecorded.authenticator's field number.
const fieldAuthenticator = 11

// KeyID is the id of a public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Hash is the chain hash of an entry's stored bytes.
func Hash(data []byte) []byte {
	sum := sha256.Sum256(data)
	return sum[:]
}

// Signer seals entries with a private log key. It is safe for concurrent use.
type Signer struct {
	id   string
	priv ed25519.PrivateKey
	memo *Memo
}

// NewSigner returns a signer with priv.
func NewSigner(priv ed25519.PrivateKey) *Signer {
	return &Signer{id: KeyID(priv.Public().(ed25519.PublicKey)), priv: priv}
}

// SetMemo makes the signer remember in m what it seals (see Memo). Call it before the signer
// is shared.
func (s *Signer) SetMemo(m *Memo) {
	if s != nil {
		s.memo = m
	}
}

// ID is the signer's key id.
func (s *Signer) ID() string { return s.id }

// Public is the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Seal stamps rec with the signer's key id and the place of the event's previous entry (nil
// for its first): its stream sequence and the chain hash of its stored bytes. It returns rec's
// stored bytes, authenticator last. rec is modified.
func (s *Signer) Seal(rec *busv1.EventRecorded, prev *Entry) ([]byte, error) {
	if rec.GetEnvelope() == nil {
		return nil, errors.New("logsign: entry without envelope")
	}
	rec.Envelope.KeyId = s.id
	rec.PrevHash, rec.PrevSeq = nil, 0
	if prev != nil {
		rec.PrevHash, rec.PrevSeq = Hash(prev.Data), prev.Seq
	}
	rec.Authenticator = nil
	body, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(s.priv, body)
	data := protowire.AppendTag(body, fieldAuthenticator, protowire.BytesType)
	data = protowire.AppendBytes(data, sig)
	rec.Authenticator = sig
	if s.memo != nil {
		s.memo.add(sha256.Sum256(data))
	}
	return data, nil
}

// Appended tells the signer's memo (SetMemo) that data, which it sealed, was stored at seq on
// subject by a publish that expected the entry its seal names as prev (nothing, for an
// event's first) to be the subject's last. That publish succeeding proves the entry's place:
// the entry before it is the one it names and nothing lies between, and the log denies
// deletes, so it stays so. Readers of this process then skip the place check for those bytes
// read at exactly that subject and sequence (Entry.Placed). Call it only for a publish that
// stored the message (not one answered as a duplicate of an earlier one).
func (s *Signer) Appended(data []byte, subject string, seq uint64) {
	if s == nil || s.memo == nil {
		return
	}
	s.memo.appended(sha256.Sum256(data), placeOf(subject, seq))
}

// ErrIntegrity is wrapped by every error that reports an entry failing its checks.
var ErrIntegrity = errors.New("log integrity check failed")

// IntegrityError is an entry that failed a check.
type IntegrityError struct {
	Subject string
	Seq     uint64
	Reason  string
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("log entry %s seq %d: %s", e.Subject, e.Seq, e.Reason)
}

// Unwrap makes errors.Is(err, ErrIntegrity) hold.
func (e *IntegrityError) Unwrap() error { return ErrIntegrity }

// Entry is one opened log entry.
type Entry struct {
	Subject string
	Seq     uint64
	// Data is the entry as stored (the chain hashes it).
	Data []byte
	// Hash, when set, is Hash(Data): a reader keeping many entries for their chain (audit)
	// keeps it instead of Data.
	Hash []byte
	Rec  *busv1.EventRecorded
	// Signed is false for an entry written before the log was signed (below the horizon), or
	// when the verifier checks nothing.
	Signed bool
	// Placed: these bytes were sealed and appended by this process at exactly this subject and
	// sequence with a conditional publish (Signer.Appended), which proves their place in the
	// chain; CheckPlace has nothing to read.
	Placed bool
}

// Verifier opens entries. The nil Verifier checks nothing (a deployment without log keys):
// it only decodes. It is safe for concurrent use.
type Verifier struct {
	keys map[string]ed25519.PublicKey
	// horizons are the events streams' horizons, by partition (bus.PartitionOfEventSubject):
	// each stream of a partitioned log was signed from its own sequence on.
	horizons [bus.MaxPartitions]horizon
	failures atomic.Uint64
	// direct makes CheckPlace read with direct gets (SetDirect).
	direct bool
	// memo holds what a Signer of this process sealed (SetMemo).
	memo *Memo
}

// SetMemo makes the verifier accept, without checking their signature again, the entries
// whose bytes a Signer sharing m sealed (see Memo). Call it before the verifier is shared.
func (v *Verifier) SetMemo(m *Memo) {
	if v != nil {
		v.memo = m
	}
}

// SetDirect makes CheckPlace read the stream with direct gets instead of from its leader:
// right for an R1 stream, whose only replica is its leader. Call it before the verifier is
// shared.
func (v *Verifier) SetDirect(direct bool) {
	if v != nil {
		v.direct = direct
	}
}

// horizon is one events stream's signing horizon.
type horizon struct {
	// signedFrom is the horizon; 0 until known, which counts as 1 (everything must be signed).
	signedFrom atomic.Uint64
	// reload, set by FollowHorizon, reads the horizon again when an unsigned entry meets an
	// unknown horizon (at most every reloadEvery): lifecycle may have set it a moment ago.
	reload     func()
	lastReload atomic.Int64
}

// reloadEvery bounds how often an unsigned entry makes the verifier read the horizon again.
const reloadEvery = 500 * time.Millisecond

// NewVerifier returns a verifier accepting entries signed by any of keys.
func NewVerifier(keys ...ed25519.PublicKey) *Verifier {
	v := &Verifier{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		v.keys[KeyID(k)] = k
	}
	return v
}

// KeyIDs lists the ids of the verifier's keys.
func (v *Verifier) KeyIDs() []string {
	if v == nil {
		return nil
	}
	ids := make([]string, 0, len(v.keys))
	for id := range v.keys {
		ids = append(ids, id)
	}
	return ids
}

// SetSignedFrom sets the horizon of PUSHGO_EVENTS (partition 0): entries from stream
// sequence seq on must be signed.
func (v *Verifier) SetSignedFrom(seq uint64) { v.SetSignedFromIn(bus.StreamEvents, seq) }

// SetSignedFromIn sets the horizon of an events stream.
func (v *Verifier) SetSignedFromIn(stream string, seq uint64) {
	if v != nil {
		v.horizons[bus.PartitionOfEventsStream(stream)].signedFrom.Store(seq)
	}
}

// SignedFrom is the horizon of PUSHGO_EVENTS (0: not known, every entry must be signed).
func (v *Verifier) SignedFrom() uint64 { return v.SignedFromIn(bus.StreamEvents) }

// SignedFromIn is the horizon of an events stream (0: not known).
func (v *Verifier) SignedFromIn(stream string) uint64 {
	if v == nil {
		return 0
	}
	return v.horizons[bus.PartitionOfEventsStream(stream)].signedFrom.Load()
}

// Failures counts the entries this verifier found broken.
func (v *Verifier) Failures() uint64 {
	if v == nil {
		return 0
	}
	return v.failures.Load()
}

// Open decodes and checks one stored entry: an *IntegrityError when it is undecodable, its
// authenticator does not verify with the key it names, or it is unsigned at or above the
// horizon. It checks the entry alone; Follows checks its place in the chain.
func (v *Verifier) Open(subject string, seq uint64, data []byte) (*Entry, error) {
	e := &Entry{Subject: subject, Seq: seq, Data: data, Rec: &busv1.EventRecorded{}}
	if err := proto.Unmarshal(data, e.Rec); err != nil {
		return nil, v.broken(subject, seq, "undecodable: "+err.Error())
	}
	if v == nil {
		return e, nil
	}
	if len(e.Rec.GetAuthenticator()) == 0 {
		h := &v.horizons[bus.PartitionOfEventSubject(subject)]
		if h.signedFrom.Load() == 0 && h.reload != nil {
			if now, last := time.Now().UnixNano(), h.lastReload.Load(); now-last > int64(reloadEvery) && h.lastReload.CompareAndSwap(last, now) {
				h.reload()
			}
		}
		if from := h.signedFrom.Load(); from > 0 && seq < from {
			return e, nil // written before the log was signed
		}
		return nil, v.broken(subject, seq, "no authenticator")
	}
	id := e.Rec.GetEnvelope().GetKeyId()
	key, ok := v.keys[id]
	if !ok {
		return nil, v.broken(subject, seq, fmt.Sprintf("signed with unknown key %q", id))
	}
	if v.memo != nil {
		if p, ok := v.memo.lookup(sha256.Sum256(data)); ok {
			e.Signed = true // these very bytes were signed here
			e.Placed = p.seq != 0 && p == placeOf(subject, seq)
			return e, nil
		}
	}
	body, sig, ok := splitAuthenticator(data)
	if !ok || !ed25519.Verify(key, body, sig) {
		return nil, v.broken(subject, seq, "authenticator does not verify")
	}
	e.Signed = true
	return e, nil
}

// Follows checks that next is the entry after prev in its event's chain (prev nil: next must
// be the event's first): its prev_hash is prev's hash, and its version continues prev's (one
// more when applied, the same for a late update). An unsigned next below the horizon carries
// no chain and is not checked.
func (v *Verifier) Follows(prev, next *Entry) error {
	if v == nil || !next.Signed {
		return nil
	}
	r := next.Rec
	if prev == nil {
		if len(r.GetPrevHash()) != 0 || r.GetPrevSeq() != 0 || r.GetVersion() != 1 || !r.GetApplied() {
			return v.broken(next.Subject, next.Seq, fmt.Sprintf("version %d is the first entry of its event: an entry before it is missing", r.GetVersion()))
		}
		return nil
	}
	ph := prev.Hash
	if ph == nil {
		ph = Hash(prev.Data)
	}
	if r.GetPrevSeq() != prev.Seq || !bytes.Equal(r.GetPrevHash(), ph) {
		return v.broken(next.Subject, next.Seq, fmt.Sprintf("prev_hash does not match the entry before it (seq %d): an entry is missing, moved or replayed", prev.Seq))
	}
	want := prev.Rec.GetVersion()
	if r.GetApplied() {
		want++
	}
	if r.GetVersion() != want {
		return v.broken(next.Subject, next.Seq, fmt.Sprintf("version %d after version %d", r.GetVersion(), prev.Rec.GetVersion()))
	}
	return nil
}

// Starts checks next as the oldest entry of its event the stream still holds: the event's
// first, or one whose predecessor is below firstSeq, the stream's oldest sequence (it expired
// with the retention; the log denies deletes, so nothing above firstSeq can be missing that
// way).
func (v *Verifier) Starts(next *Entry, firstSeq uint64) error {
	if ps := next.Rec.GetPrevSeq(); v != nil && next.Signed && ps > 0 && ps < firstSeq {
		return nil
	}
	return v.Follows(nil, next)
}

func (v *Verifier) broken(subject string, seq uint64, reason string) error {
	if v != nil {
		v.failures.Add(1)
	}
	metrics.IntegrityFailures.Inc()
	return &IntegrityError{Subject: subject, Seq: seq, Reason: reason}
}

// splitAuthenticator cuts the last field off data: the body the signature covers and the
// signature. ok is false unless that field is a well-formed authenticator.
func splitAuthenticator(data []byte) (body, sig []byte, ok bool) {
	last := -1
	for i := 0; i < len(data); {
		num, typ, n := protowire.ConsumeTag(data[i:])
		if n < 0 {
			return nil, nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, data[i+n:])
		if m < 0 {
			return nil, nil, false
		}
		if num == fieldAuthenticator {
			if typ != protowire.BytesType || i+n+m != len(data) {
				return nil, nil, false // an authenticator that is not the last field
			}
			last = i
			sig, _ = protowire.ConsumeBytes(data[i+n:])
		}
		i += n + m
	}
	if last < 0 || len(sig) != ed25519.SignatureSize {
		return nil, nil, false
	}
	return data[:last], sig, true
}
