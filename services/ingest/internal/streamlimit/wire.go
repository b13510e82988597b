package streamlimit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// An announcement on bus.StreamsSubject:
//
//	version   1 byte (wireVersion)
//	kind      1 byte: kindCounts, kindHello or kindBye
//	instance  16 bytes, the sender's random id
//	kindCounts only:
//	  n       uvarint (≥ 1), records that follow
//	  n × { key length uvarint (3..MaxKeyLen), key bytes ("d.<device>" or "t.<tenant>"),
//	        count uvarint (0..maxCount) }
//
// A count is absolute: the live streams of that key on the sender now (0: none). Hello and bye
// carry nothing after the instance id. A decoder refuses anything else (another version or
// kind, trailing bytes, values out of range) as a whole.
const (
	wireVersion = 1
	idLen       = 16
	headerLen   = 1 + 1 + idLen
	// minRecordLen is a record with the shortest key ("d.x") and a one-byte count.
	minRecordLen = 1 + 3 + 1
	// minMessageBytes always fits a header, a record count and the longest record.
	minMessageBytes = headerLen + binary.MaxVarintLen64 + binary.MaxVarintLen64 + MaxKeyLen + binary.MaxVarintLen64
	// maxCount bounds an announced count; one process holds far fewer streams.
	maxCount = math.MaxInt32
)

// kind is what an announcement says.
type kind byte

const (
	// kindCounts carries absolute counts of keys.
	kindCounts kind = 1
	// kindHello is sent by an instance that starts: the others announce all their counts at
	// their next tick instead of waiting for their next snapshot.
	kindHello kind = 2
	// kindBye is sent by an instance that closes: the others forget its counts at once.
	kindBye kind = 3
)

// instanceID tells the instances apart (random, one per Limiter).
type instanceID [idLen]byte

// record is the live streams of one key on the sender.
type record struct {
	key   string
	count int
}

var errWire = errors.New("streamlimit: bad announcement")

// encode splits recs into kindCounts announcements of at most maxBytes each (maxBytes ≥
// minMessageBytes). Every key must be valid (validKey) and every count in 0..maxCount.
func encode(id instanceID, recs []record, maxBytes int) [][]byte {
	var msgs [][]byte
	for len(recs) > 0 {
		// Size the batch first: the record count precedes the records.
		size, n := headerLen+binary.MaxVarintLen64, 0
		for n < len(recs) {
			rl := recordLen(recs[n])
			if size+rl > maxBytes && n > 0 {
				break
			}
			size += rl
			n++
		}
		buf := make([]byte, 0, size)
		buf = append(buf, wireVersion, byte(kindCounts))
		buf = append(buf, id[:]...)
		buf = binary.AppendUvarint(buf, uint64(n))
		for _, r := range recs[:n] {
			buf = binary.AppendUvarint(buf, uint64(len(r.key)))
			buf = append(buf, r.key...)
			buf = binary.AppendUvarint(buf, uint64(r.count))
		}
		msgs = append(msgs, buf)
		recs = recs[n:]
	}
	return msgs
}

// encodeSignal is a hello or a bye of id.
func encodeSignal(k kind, id instanceID) []byte {
	return append([]byte{wireVersion, byte(k)}, id[:]...)
}

func recordLen(r record) int {
	return uvarintLen(uint64(len(r.key))) + len(r.key) + uvarintLen(uint64(r.count))
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// validKey reports whether key is one an instance announces: a namespace and at least one byte,
// at most MaxKeyLen bytes in all.
func validKey(key string) bool {
	if len(key) <= len(deviceNS) || len(key) > MaxKeyLen {
		return false
	}
	ns := key[:len(deviceNS)]
	return ns == deviceNS || ns == tenantNS
}

// decode parses one announcement. It never panics and allocates at most in proportion to
// len(b).
func decode(b []byte) (k kind, id instanceID, recs []record, err error) {
	if len(b) < headerLen || b[0] != wireVersion {
		return 0, id, nil, fmt.Errorf("%w: no version %d header", errWire, wireVersion)
	}
	k = kind(b[1])
	copy(id[:], b[2:headerLen])
	b = b[headerLen:]
	switch k {
	case kindHello, kindBye:
		if len(b) != 0 {
			return 0, id, nil, fmt.Errorf("%w: %d bytes after a signal", errWire, len(b))
		}
		return k, id, nil, nil
	case kindCounts:
	default:
		return 0, id, nil, fmt.Errorf("%w: kind %d", errWire, k)
	}
	count, n := binary.Uvarint(b)
	if n <= 0 || count == 0 {
		return 0, id, nil, fmt.Errorf("%w: record count", errWire)
	}
	b = b[n:]
	if count > uint64(len(b)/minRecordLen) {
		return 0, id, nil, fmt.Errorf("%w: %d records cannot fit %d bytes", errWire, count, len(b))
	}
	recs = make([]record, 0, count)
	for i := range count {
		kl, n := binary.Uvarint(b)
		if n <= 0 || kl > MaxKeyLen || uint64(len(b)-n) < kl {
			return 0, id, nil, fmt.Errorf("%w: record %d: key length", errWire, i)
		}
		b = b[n:]
		key := string(b[:kl])
		b = b[kl:]
		if !validKey(key) {
			return 0, id, nil, fmt.Errorf("%w: record %d: key %q", errWire, i, key)
		}
		c, n := binary.Uvarint(b)
		if n <= 0 || c > maxCount {
			return 0, id, nil, fmt.Errorf("%w: record %d: count", errWire, i)
		}
		b = b[n:]
		recs = append(recs, record{key: key, count: int(c)})
	}
	if len(b) != 0 {
		return 0, id, nil, fmt.Errorf("%w: %d trailing bytes", errWire, len(b))
	}
	return kindCounts, id, recs, nil
}
