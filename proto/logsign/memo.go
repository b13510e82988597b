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
// It holds the last n hashes (32 bytes each), first in first out. It is safe for concurrent
// use; a nil *Memo remembers nothing.
type Memo struct {
	mu   sync.Mutex
	set  map[[sha256.Size]byte]place
	ring [][sha256.Size]byte
	next int
}

// place is where a sealed entry was appended (zero until Signer.Appended says).
type place struct {
	subject string
	seq     uint64
}

// DefaultMemoSize covers what dispatch and the readers open soon after lifecycle signs it, at
// any realistic rate (1 s at 64k ops/s), in ~4 MB.
const DefaultMemoSize = 1 << 16

// NewMemo returns a memo of the last n sealed entries (DefaultMemoSize when n ≤ 0).
func NewMemo(n int) *Memo {
	if n <= 0 {
		n = DefaultMemoSize
	}
	return &Memo{set: make(map[[sha256.Size]byte]place, n), ring: make([][sha256.Size]byte, 0, n)}
}

func (m *Memo) add(sum [sha256.Size]byte) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.set[sum]; ok {
		return
	}
	if len(m.ring) < cap(m.ring) {
		m.ring = append(m.ring, sum)
	} else {
		delete(m.set, m.ring[m.next])
		m.ring[m.next] = sum
		m.next = (m.next + 1) % len(m.ring)
	}
	m.set[sum] = place{}
}

// appended records where a sealed entry was stored; nothing when it was not sealed here (or
// has left the memo).
func (m *Memo) appended(sum [sha256.Size]byte, p place) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.set[sum]; ok {
		m.set[sum] = p
	}
}

// lookup reports whether the entry was sealed here and where it was appended, if known.
func (m *Memo) lookup(sum [sha256.Size]byte) (place, bool) {
	if m == nil {
		return place{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.set[sum]
	return p, ok
}
