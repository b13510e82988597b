package logsign

import (
	"crypto/sha256"
	"sync"
)

// Memo remembers the chain hashes of the entries that a Signer of this process sealed, so that
// a Verifier of the same process accepts those exact bytes without checking their signature
// again: in `pushgo serve` lifecycle, dispatch and ingest share one, and a domain event that
// lifecycle just signed is pushed by dispatch without a second Ed25519 verification (~70 µs,
// a tenth of the server's CPU per op). Nothing but a Signer adds to it, and only what it
// signed: bytes read from the broker that match were signed here, whoever stored them, and
// everything else (an entry forged, altered, or sealed by another process) is verified as
// before. Where an entry sits in its chain is checked by the readers, unless the memo also
// knows where the entry was appended (Signer.Appended): an entry read at exactly that subject
// and sequence stands where its conditional append put it (see Entry.Placed); a copy of its
// bytes anywhere else does not.
//
// It holds the last n/2 to n hashes in two generations: new hashes go into the current one,
// and when that holds n/2 it becomes the previous one and the old previous one is dropped
// whole. Nothing is ever deleted from a map, which would leave tombstones that make Go's maps
// grow under churn (a ring with deletes held 5.7 MB for 16,384 entries after 2M insertions,
// against 2 MB when first filled). It is safe for concurrent use; a nil *Memo remembers nothing.
type Memo struct {
	mu        sync.Mutex
	half      int
	cur, prev map[[sha256.Size]byte]place
}

// place is where a sealed entry was appended (zero until Signer.Appended says): the SHA-256 of
// its subject and its sequence. A digest rather than the subject itself keeps the memo free of
// pointers and of an allocation per entry, which would be scattered over the heap for as long
// as the entry is remembered and keep its pages from being returned after a burst.
type place struct {
	subject [sha256.Size]byte
	seq     uint64
}

// placeOf returns the place of an entry stored at seq on subject.
func placeOf(subject string, seq uint64) place {
	var buf [128]byte // subjects fit: no allocation
	return place{subject: sha256.Sum256(append(buf[:0], subject...)), seq: seq}
}

// DefaultMemoSize covers what dispatch opens soon after lifecycle signs it: at least 8,192 of
// the last entries, 2.7 s at 3,000 ops/s and 0.8 s at 10,000, in about 2.5 MB of heap (the
// 65,536 of a ring held 18–22 MB after a soak, for ever: issue 12). An entry that has left the
// memo is verified as usual, so a small memo costs CPU only when dispatch lags by seconds.
const DefaultMemoSize = 1 << 14

// NewMemo returns a memo of the last n sealed entries (DefaultMemoSize when n ≤ 0); it
// remembers at least the last n/2.
func NewMemo(n int) *Memo {
	if n <= 0 {
		n = DefaultMemoSize
	}
	half := max(n/2, 1)
	return &Memo{half: half, cur: make(map[[sha256.Size]byte]place, half)}
}

func (m *Memo) add(sum [sha256.Size]byte) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.find(sum); ok {
		return
	}
	if len(m.cur) >= m.half {
		m.prev, m.cur = m.cur, make(map[[sha256.Size]byte]place, m.half)
	}
	m.cur[sum] = place{}
}

// find returns the generation holding sum. The lock must be held.
func (m *Memo) find(sum [sha256.Size]byte) (map[[sha256.Size]byte]place, bool) {
	if _, ok := m.cur[sum]; ok {
		return m.cur, true
	}
	if _, ok := m.prev[sum]; ok {
		return m.prev, true
	}
	return nil, false
}

// appended records where a sealed entry was stored; nothing when it was not sealed here (or
// has left the memo).
func (m *Memo) appended(sum [sha256.Size]byte, p place) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if gen, ok := m.find(sum); ok {
		gen[sum] = p
	}
}

// lookup reports whether the entry was sealed here and where it was appended, if known.
func (m *Memo) lookup(sum [sha256.Size]byte) (place, bool) {
	if m == nil {
		return place{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	gen, ok := m.find(sum)
	return gen[sum], ok
}
