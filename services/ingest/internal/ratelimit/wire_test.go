package ratelimit

import (
	"bytes"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var testID = [idLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	recs := []record{
		{key: "ops.ch.AAAAAAAAAAAAAAAAAAAAAAAAAA", rate: 100, burst: 200, taken: 3},
		{key: "x", rate: 0.5, burst: 1, taken: 0.25},
		{key: strings.Repeat("k", MaxKeyLen), rate: maxRate, burst: maxBurst, taken: maxTaken},
	}
	msgs := encode(testID, recs, DefaultMaxMessageBytes)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	id, got, err := decode(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if id != testID || !reflect.DeepEqual(got, recs) {
		t.Fatalf("decoded %x %v, want %x %v", id, got, testID, recs)
	}
}

// TestWireSplitsUnderTheCap: many keys go out in several messages, none over the cap, and
// every record arrives once.
func TestWireSplitsUnderTheCap(t *testing.T) {
	t.Parallel()
	var recs []record
	for i := range 5000 {
		recs = append(recs, record{key: "ops.ch." + strconv.Itoa(i), rate: 100, burst: 200, taken: 1})
	}
	for _, maxBytes := range []int{minMessageBytes, 4096, DefaultMaxMessageBytes} {
		msgs := encode(testID, recs, maxBytes)
		var got []record
		for _, m := range msgs {
			if len(m) > maxBytes {
				t.Fatalf("cap %d: a message of %d bytes", maxBytes, len(m))
			}
			_, rs, err := decode(m)
			if err != nil {
				t.Fatalf("cap %d: %v", maxBytes, err)
			}
			got = append(got, rs...)
		}
		if !reflect.DeepEqual(got, recs) {
			t.Fatalf("cap %d: %d records came back of %d", maxBytes, len(got), len(recs))
		}
		if maxBytes == DefaultMaxMessageBytes && len(msgs) < 2 {
			t.Fatalf("5000 records in %d message(s) of at most %d bytes", len(msgs), maxBytes)
		}
	}
}

func TestWireRefusesGarbage(t *testing.T) {
	t.Parallel()
	valid := encode(testID, []record{{key: "k", rate: 1, burst: 2, taken: 1}}, DefaultMaxMessageBytes)[0]
	withValues := func(rate, burst, taken float64) []byte {
		return encode(testID, []record{{key: "k", rate: rate, burst: burst, taken: taken}}, DefaultMaxMessageBytes)[0]
	}
	tests := []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"header only, no count", valid[:1+idLen]},
		{"other version", append([]byte{2}, valid[1:]...)},
		{"truncated record", valid[:len(valid)-1]},
		{"trailing bytes", append(bytes.Clone(valid), 0)},
		{"count beyond the data", append(append(bytes.Clone(valid[:1+idLen]), 0xff, 0xff, 0x03), valid[1+idLen+1:]...)},
		{"empty key", append(append(bytes.Clone(valid[:1+idLen+1]), 0), valid[1+idLen+3:]...)},
		{"zero rate", withValues(0, 2, 1)},
		{"NaN rate", withValues(math.NaN(), 2, 1)},
		{"rate too high", withValues(2*maxRate, 2, 1)},
		{"burst below 1", withValues(1, 0.5, 1)},
		{"infinite burst", withValues(1, math.Inf(1), 1)},
		{"zero taken", withValues(1, 2, 0)},
		{"negative taken", withValues(1, 2, -5)},
		{"huge taken", withValues(1, 2, 2*maxTaken)},
	}
	for _, tt := range tests {
		if _, recs, err := decode(tt.msg); err == nil {
			t.Errorf("%s: decoded to %v", tt.name, recs)
		}
	}
}

// FuzzDecode: the decoder never panics, accepts only what it can encode again, and what it
// accepts survives a round trip.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{wireVersion})
	f.Add(encode(testID, []record{{key: "k", rate: 1, burst: 2, taken: 1}}, DefaultMaxMessageBytes)[0])
	f.Add(encode(testID, []record{
		{key: "ops.ch.AAAAAAAAAAAAAAAAAAAAAAAAAA", rate: 100, burst: 200, taken: 7},
		{key: "ops.tn.t1", rate: 1000, burst: 2000, taken: 0.5},
	}, DefaultMaxMessageBytes)[0])
	f.Add(append([]byte{wireVersion}, make([]byte, idLen+10)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, recs, err := decode(b)
		if err != nil {
			return
		}
		if len(recs) == 0 {
			return // a count of zero decodes to nothing; the encoder never sends it
		}
		msgs := encode(id, recs, 1<<30)
		if len(msgs) != 1 {
			t.Fatalf("%d messages re-encoding %d records", len(msgs), len(recs))
		}
		id2, recs2, err := decode(msgs[0])
		if err != nil || id2 != id || !reflect.DeepEqual(recs2, recs) {
			t.Fatalf("round trip: %v %v, want %v", err, recs2, recs)
		}
	})
}
