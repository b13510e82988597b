package ratelimit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The announcement on bus.RateLimitSubject, little endian:
//
//	version   1 byte (wireVersion)
//	instance  16 bytes, the sender's random id
//	count     uvarint, records that follow
//	count × { key length uvarint (1..MaxKeyLen), key bytes,
//	          rate float64, burst float64, taken float64 }
//
// rate is in tokens per second; burst and taken in tokens. A decoder refuses anything else
// (another version, trailing bytes, values out of range) as a whole.
const (
	wireVersion = 1
	idLen       = 16
	headerLen   = 1 + idLen + binary.MaxVarintLen64
	// minRecordLen is a record with a one-byte key.
	minRecordLen = 1 + 1 + 3*8
	// minMessageBytes always fits a header and the longest record.
	minMessageBytes = headerLen + binary.MaxVarintLen64 + MaxKeyLen + 3*8
)

// Bounds of announced values; beyond them an announcement is garbage.
const (
	maxRate  = 1e9
	maxBurst = 1e12
	maxTaken = 1e12
)

// record is what one instance took from one key's bucket since its last announcement.
type record struct {
	key                string
	rate, burst, taken float64
}

var errWire = errors.New("ratelimit: bad announcement")

// encode splits recs into announcements of at most maxBytes each (maxBytes ≥ minMessageBytes).
func encode(id [idLen]byte, recs []record, maxBytes int) [][]byte {
	var msgs [][]byte
	for len(recs) > 0 {
		// Size the batch first: the count prefix precedes the records.
		size, n := 1+idLen, 0
		for n < len(recs) {
			rl := recordLen(recs[n])
			if size+binary.MaxVarintLen64+rl > maxBytes && n > 0 {
				break
			}
			size += rl
			n++
		}
		buf := make([]byte, 0, size+binary.MaxVarintLen64)
		buf = append(buf, wireVersion)
		buf = append(buf, id[:]...)
		buf = binary.AppendUvarint(buf, uint64(n))
		for _, r := range recs[:n] {
			buf = binary.AppendUvarint(buf, uint64(len(r.key)))
			buf = append(buf, r.key...)
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(r.rate))
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(r.burst))
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(r.taken))
		}
		msgs = append(msgs, buf)
		recs = recs[n:]
	}
	return msgs
}

func recordLen(r record) int {
	return uvarintLen(uint64(len(r.key))) + len(r.key) + 3*8
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// decode parses one announcement. It never panics and allocates at most in proportion to
// len(b).
func decode(b []byte) (id [idLen]byte, recs []record, err error) {
	if len(b) < 1+idLen || b[0] != wireVersion {
		return id, nil, fmt.Errorf("%w: no version %d header", errWire, wireVersion)
	}
	copy(id[:], b[1:1+idLen])
	b = b[1+idLen:]
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return id, nil, fmt.Errorf("%w: record count", errWire)
	}
	b = b[n:]
	if count > uint64(len(b)/minRecordLen) {
		return id, nil, fmt.Errorf("%w: %d records cannot fit %d bytes", errWire, count, len(b))
	}
	recs = make([]record, 0, count)
	for i := range count {
		kl, n := binary.Uvarint(b)
		if n <= 0 || kl == 0 || kl > MaxKeyLen || uint64(len(b)-n) < kl+3*8 {
			return id, nil, fmt.Errorf("%w: record %d: key length", errWire, i)
		}
		b = b[n:]
		r := record{key: string(b[:kl])}
		b = b[kl:]
		r.rate = math.Float64frombits(binary.LittleEndian.Uint64(b))
		r.burst = math.Float64frombits(binary.LittleEndian.Uint64(b[8:]))
		r.taken = math.Float64frombits(binary.LittleEndian.Uint64(b[16:]))
		b = b[24:]
		if !(r.rate > 0 && r.rate <= maxRate) || !(r.burst >= 1 && r.burst <= maxBurst) || !(r.taken > 0 && r.taken <= maxTaken) {
			return id, nil, fmt.Errorf("%w: record %d: values out of range", errWire, i)
		}
		recs = append(recs, r)
	}
	if len(b) != 0 {
		return id, nil, fmt.Errorf("%w: %d trailing bytes", errWire, len(b))
	}
	return id, recs, nil
}
