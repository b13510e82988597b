// Package opfilter answers "was this op_id applied before?" from an event's log alone, so that
// lifecycle can answer repeats of an op within the idempotency window without a broker key
// per op.
//
// Every log entry of an event (one JetStream subject per event, one op per entry) carries a
// Filter of the op_ids of the entries before it. To take a new op, lifecycle decodes the
// head's filter and looks the op_id up; to append after head H it writes
// H.filter + (H.op_id, H.seq), so the filter in the new head covers every earlier entry.
//
// A Filter holds:
//   - an exact list of the 32 most recent ops as (64-bit hash of op_id, stream sequence); a hit
//     is Exact and names the entry to read (the caller compares the real op_id, so a hash
//     collision costs one read, never a wrong answer);
//   - two Bloom generations, current and previous, for the ops that fell off the exact list.
//     Each records its start time and the lowest sequence added to it; a hit is Maybe and
//     names the lowest sequence a search must reach. The search follows the exact lists back
//     (Oldest): each entry read holds the 32 ops before it.
//
// Absent is certain for every op added less than a window ago, by the clock given to Add.
// Exact and Maybe may be false positives, which cost a read, or one read per 32 ops searched.
// A generation spans a whole window, so an op
// stays findable for at least one window after it leaves the exact list and is dropped after
// at most two (see roll). Exact entries carry no time: they stay until 32 newer ops push them
// out, and the caller judges age by the entry it reads.
//
// Cost. A Bloom has 8192 bits (1 KiB) and k = 7: false positives stay near 1 % up to about 850
// ops per generation, that is per window, and rise beyond that; they cost reads, never a
// wrong answer. Encoded size: an empty filter is 4 bytes, ≤ 32 ops about 12 bytes per
// op, a full filter (both generations holding ops) about 2.4 KiB, and never more than 4 KiB.
// Decode, Lookup, Add and Encode of a full filter take a few microseconds and 4 allocations
// of about 5 KiB in all (BenchmarkAddEncodeDecode).
//
// Encoding, version 1 (varints are encoding/binary's, minimal; decoding rejects anything
// else, so an accepted input re-encodes to the same bytes):
//
//	version byte 1
//	uvarint n ≤ 32, then n × (hash: 8 bytes little-endian, seq: uvarint), oldest first
//	current generation, then previous, each one of:
//	  0                                   absent
//	  1, start ms: varint                 present, no Bloom ops yet
//	  2, start ms: varint, minSeq: uvarint, 1024 bytes of Bloom bits (little-endian words)
//
// A Filter is not safe for concurrent use.
package opfilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Result of Lookup.
type Result int

const (
	Absent Result = iota // certainly not among the filter's ops
	Exact                // among the recent ops, at stream sequence seq
	Maybe                // possibly among the older ops, at sequence seq or later
)

const (
	version   = 1
	maxExact  = 32
	bloomBits = 8192
	bloomK    = 7
	// bloomWords is the Bloom bitset in 64-bit words; it encodes as bloomBytes bytes.
	bloomWords = bloomBits / 64
	bloomBytes = bloomBits / 8
	// maxEncoded bounds what Decode reads before parsing; the largest valid encoding is
	// 2 + 32×18 + 2×(1+10+10+1024) = 2668 bytes.
	maxEncoded = 4096
)

// Generation tags in the encoding.
const (
	genAbsent = 0
	genEmpty  = 1
	genBloom  = 2
)

type entry struct {
	hash uint64
	seq  uint64
}

type generation struct {
	present bool
	start   int64               // Unix ms
	minSeq  uint64              // lowest seq added to bloom; meaningful only when bloom != nil
	bloom   *[bloomWords]uint64 // nil until the first op falls into this generation
}

// Filter is the set of an event's op_ids within the idempotency window. The zero value is an
// empty filter, as New returns.
type Filter struct {
	exact [maxExact]entry // oldest first
	n     int             // entries used in exact
	gens  [2]generation   // current, previous
}

// New returns an empty filter.
func New() *Filter { return &Filter{} }

// Add records that opID was applied at stream sequence seq, at time now (Unix ms). window is
// the idempotency window.
func (f *Filter) Add(opID string, seq uint64, now int64, window time.Duration) {
	f.roll(now, window)
	if f.n == maxExact {
		old := f.exact[0]
		copy(f.exact[:], f.exact[1:])
		f.n--
		f.addBloom(old)
	}
	f.exact[f.n] = entry{hash: opHash(opID), seq: seq}
	f.n++
}

// roll ages the generations. A generation spans a whole window, not half of one: with
// half-window generations an op that falls off the exact list just before a roll would be
// dropped half a window later, and a repeat inside the window would be answered Absent.
// With whole-window ones, the previous generation only holds ops inserted before the current
// one started, so dropping it at the next roll (one window later) drops only ops older than
// the window; the price is that a generation collects a window's ops instead of half.
func (f *Filter) roll(now int64, window time.Duration) {
	span := window.Milliseconds()
	cur := &f.gens[0]
	switch {
	case !cur.present:
		f.gens[1] = generation{}
	case now-cur.start >= 2*span:
		// The current generation's last insert was before now-span too: both are stale.
		f.gens[1] = generation{}
	case now-cur.start >= span:
		f.gens[1] = *cur
	default:
		return
	}
	f.gens[0] = generation{present: true, start: now}
}

// addBloom moves an entry evicted from the exact list into the current generation, which
// roll has made present.
func (f *Filter) addBloom(e entry) {
	g := &f.gens[0]
	if g.bloom == nil {
		g.bloom = new([bloomWords]uint64)
		g.minSeq = e.seq
	}
	g.minSeq = min(g.minSeq, e.seq)
	a, b := bloomHashes(e.hash)
	for i := range uint64(bloomK) {
		bit := (a + i*b) % bloomBits
		g.bloom[bit/64] |= 1 << (bit % 64)
	}
}

// Lookup reports whether opID may be among the filter's ops. For Exact, seq is the entry's
// sequence; for Maybe, seq is the lowest sequence it can be at if it is there.
func (f *Filter) Lookup(opID string) (Result, uint64) {
	h := opHash(opID)
	for i := f.n - 1; i >= 0; i-- {
		if f.exact[i].hash == h {
			return Exact, f.exact[i].seq
		}
	}
	a, b := bloomHashes(h)
	found, from := false, uint64(0)
	for i := range f.gens {
		g := &f.gens[i]
		if g.bloom == nil || !bloomHas(g.bloom, a, b) {
			continue
		}
		if !found || g.minSeq < from {
			from = g.minSeq
		}
		found = true
	}
	if found {
		return Maybe, from
	}
	return Absent, 0
}

// Oldest returns the stream sequence of the oldest op on the exact list; ok is false when
// the list is empty (the filter of an event's first entry).
//
// The exact list is a chain back through the event: a filter's list always holds the (up to)
// 32 ops just before the entry that carries it, so the entry at Oldest carries the 32 ops
// before that one. A reader following it covers an event's older ops 32 per read, reading
// only the event's own entries by sequence (see lifecycle's FindOp).
func (f *Filter) Oldest() (seq uint64, ok bool) {
	if f.n == 0 {
		return 0, false
	}
	return f.exact[0].seq, true
}

func bloomHas(bloom *[bloomWords]uint64, a, b uint64) bool {
	for i := range uint64(bloomK) {
		bit := (a + i*b) % bloomBits
		if bloom[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// bloomHashes derives the two double-hashing functions from an op's 64-bit hash. The Bloom
// only ever sees ops evicted from the exact list, which kept 64 bits and not the op_id, so
// the Bloom positions must be a function of those bits alone. The second function is odd so
// that, modulo the power-of-two size, the k probes are distinct.
func bloomHashes(h uint64) (a, b uint64) {
	return h, fmix64(h^0x9e3779b97f4a7c15) | 1
}

// opHash is FNV-1a 64 of s (as hash/fnv's New64a, without its allocation) finished with
// MurmurHash3's fmix64, because FNV's low bits, which pick Bloom bits, mix poorly. Both are
// fixed arithmetic, so the result is stable across processes, machines and Go versions, as
// an encoding kept in the log needs (hash/maphash is seeded per process).
func opHash(s string) uint64 {
	const (
		offset = 0xcbf29ce484222325
		prime  = 0x100000001b3
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return fmix64(h)
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// Encode returns the filter's bytes (never empty: at least a version byte).
func (f *Filter) Encode() []byte {
	size := 2 + f.n*(8+binary.MaxVarintLen64)
	for i := range f.gens {
		size += 1 + 2*binary.MaxVarintLen64
		if f.gens[i].bloom != nil {
			size += bloomBytes
		}
	}
	b := make([]byte, 0, size)
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(f.n))
	for _, e := range f.exact[:f.n] {
		b = binary.LittleEndian.AppendUint64(b, e.hash)
		b = binary.AppendUvarint(b, e.seq)
	}
	for i := range f.gens {
		g := &f.gens[i]
		switch {
		case !g.present:
			b = append(b, genAbsent)
		case g.bloom == nil:
			b = append(b, genEmpty)
			b = binary.AppendVarint(b, g.start)
		default:
			b = append(b, genBloom)
			b = binary.AppendVarint(b, g.start)
			b = binary.AppendUvarint(b, g.minSeq)
			for _, w := range g.bloom {
				b = binary.LittleEndian.AppendUint64(b, w)
			}
		}
	}
	return b
}

// errDecode prefixes every Decode error; the text after it says what was wrong.
var errDecode = errors.New("opfilter: decode")

// Decode parses Encode's output. It never panics, and it rejects an empty slice (an entry
// written before filters existed: the caller decides what that means), an unknown version,
// and anything malformed, oversized, non-minimal or followed by trailing bytes.
func Decode(b []byte) (*Filter, error) {
	switch {
	case len(b) == 0:
		return nil, fmt.Errorf("%w: empty", errDecode)
	case len(b) > maxEncoded:
		return nil, fmt.Errorf("%w: %d bytes, more than %d", errDecode, len(b), maxEncoded)
	case b[0] != version:
		return nil, fmt.Errorf("%w: unknown version %d", errDecode, b[0])
	}
	r := reader{b: b, off: 1}
	f := &Filter{}
	n := r.uvarint("exact count")
	if r.err == nil && n > maxExact {
		return nil, fmt.Errorf("%w: exact count %d, more than %d", errDecode, n, maxExact)
	}
	f.n = int(n)
	for i := range f.n {
		f.exact[i].hash = r.uint64("exact hash")
		f.exact[i].seq = r.uvarint("exact seq")
	}
	for i := range f.gens {
		g := &f.gens[i]
		switch tag := r.byte("generation tag"); {
		case r.err != nil, tag == genAbsent:
		case tag == genEmpty, tag == genBloom:
			g.present = true
			g.start = r.varint("generation start")
			if tag == genBloom {
				g.minSeq = r.uvarint("generation minSeq")
				g.bloom = r.bloom()
			}
		default:
			r.fail(fmt.Sprintf("generation tag %d", tag))
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if !f.gens[0].present && f.gens[1].present {
		return nil, fmt.Errorf("%w: previous generation without a current one", errDecode)
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", errDecode, len(b)-r.off)
	}
	return f, nil
}

// reader reads fields in order; after the first error every read returns zero and the error
// stays, so Decode checks once per section.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s at byte %d", errDecode, what, r.off)
	}
}

func (r *reader) byte(what string) byte {
	if r.err != nil || r.off >= len(r.b) {
		r.fail(what)
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

func (r *reader) uint64(what string) uint64 {
	if r.err != nil || len(r.b)-r.off < 8 {
		r.fail(what)
		return 0
	}
	r.off += 8
	return binary.LittleEndian.Uint64(r.b[r.off-8:])
}

// uvarint reads a minimal uvarint: a longer form of the same value would decode but
// re-encode differently.
func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 || (n > 1 && r.b[r.off+n-1] == 0) {
		r.fail(what)
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint(what string) int64 {
	u := r.uvarint(what)
	// Zigzag, as binary.Varint.
	return int64(u>>1) ^ -int64(u&1)
}

func (r *reader) bloom() *[bloomWords]uint64 {
	if r.err != nil || len(r.b)-r.off < bloomBytes {
		r.fail("bloom bits")
		return nil
	}
	bl := new([bloomWords]uint64)
	for i := range bl {
		bl[i] = binary.LittleEndian.Uint64(r.b[r.off+8*i:])
	}
	r.off += bloomBytes
	return bl
}
