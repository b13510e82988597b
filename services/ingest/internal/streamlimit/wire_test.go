package streamlimit

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var testID = instanceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	recs := []record{
		{key: "d.0123456789abcdef0123456789abcdef", count: 3},
		{key: "t.0123456789abcdef0123456789abcdef", count: 0},
		{key: "d.x", count: 1},
		{key: "t." + strings.Repeat("k", MaxKeyLen-2), count: maxCount},
	}
	msgs := encode(testID, recs, DefaultMaxMessageBytes)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	k, id, got, err := decode(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if k != kindCounts || id != testID || !reflect.DeepEqual(got, recs) {
		t.Fatalf("decoded %d %x %v, want %d %x %v", k, id, got, kindCounts, testID, recs)
	}
	for _, want := range []kind{kindHello, kindBye} {
		k, id, got, err := decode(encodeSignal(want, testID))
		if err != nil || k != want || id != testID || got != nil {
			t.Fatalf("signal %d decoded to %d %x %v %v", want, k, id, got, err)
		}
	}
}

// TestWireSplitsUnderTheCap: many keys go out in several messages, none over the cap, and
// every record arrives once.
func TestWireSplitsUnderTheCap(t *testing.T) {
	t.Parallel()
	var recs []record
	for i := range 5000 {
		recs = append(recs, record{key: "d." + strconv.Itoa(i) + strings.Repeat("0", 30), count: i % 9})
	}
	recs = append(recs, record{key: "t." + strings.Repeat("k", MaxKeyLen-2), count: maxCount})
	for _, maxBytes := range []int{minMessageBytes, 4096, DefaultMaxMessageBytes} {
		msgs := encode(testID, recs, maxBytes)
		var got []record
		for _, m := range msgs {
			if len(m) > maxBytes {
				t.Fatalf("cap %d: a message of %d bytes", maxBytes, len(m))
			}
			_, _, rs, err := decode(m)
			if err != nil {
				t.Fatalf("cap %d: %v", maxBytes, err)
			}
			got = append(got, rs...)
		}
		if !reflect.DeepEqual(got, recs) {
			t.Fatalf("cap %d: %d records came back of %d", maxBytes, len(got), len(recs))
		}
		if maxBytes == DefaultMaxMessageBytes && len(msgs) < 2 {
			t.Fatalf("5001 records in %d message(s) of at most %d bytes", len(msgs), maxBytes)
		}
	}
}

func TestWireRefusesGarbage(t *testing.T) {
	t.Parallel()
	one := func(key string, count int) []byte {
		return encode(testID, []record{{key: key, count: count}}, DefaultMaxMessageBytes)[0]
	}
	valid := one("d.k", 1)
	header := valid[:headerLen]
	tests := []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"version only", []byte{wireVersion}},
		{"header only, no count", header},
		{"other version", append([]byte{2}, valid[1:]...)},
		{"unknown kind", append([]byte{wireVersion, 9}, valid[2:]...)},
		{"kind 0", append([]byte{wireVersion, 0}, valid[2:]...)},
		{"no records", append(bytes.Clone(header), 0)},
		{"truncated record", valid[:len(valid)-1]},
		{"trailing bytes", append(bytes.Clone(valid), 0)},
		{"count beyond the data", append(append(bytes.Clone(header), 0xff, 0xff, 0x03), valid[headerLen+1:]...)},
		{"empty key", append(append(bytes.Clone(header), 1, 0), 1)},
		{"key without a namespace", one("xyz", 1)},
		{"namespace alone", one("d.", 1)},
		{"other namespace", one("x.abc", 1)},
		{"key too long", one("d."+strings.Repeat("k", MaxKeyLen-1), 1)},
		{"count too large", one("d.k", maxCount+1)},
		{"count varint overflow", append(append(bytes.Clone(header), 1, 3, 'd', '.', 'k'), bytes.Repeat([]byte{0xff}, 11)...)},
		{"hello with a body", append(encodeSignal(kindHello, testID), 0)},
		{"bye with a record", append(encodeSignal(kindBye, testID), valid[headerLen:]...)},
	}
	for _, tt := range tests {
		if _, _, recs, err := decode(tt.msg); err == nil {
			t.Errorf("%s: decoded to %v", tt.name, recs)
		}
	}
}

// FuzzDecode: the decoder never panics, accepts only what it can encode again, and what it
// accepts survives a round trip.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{wireVersion})
	f.Add(encodeSignal(kindHello, testID))
	f.Add(encodeSignal(kindBye, testID))
	f.Add(encode(testID, []record{{key: "d.k", count: 1}}, DefaultMaxMessageBytes)[0])
	f.Add(encode(testID, []record{
		{key: "d.0123456789abcdef0123456789abcdef", count: 8},
		{key: "t.0123456789abcdef0123456789abcdef", count: 0},
	}, DefaultMaxMessageBytes)[0])
	f.Add(append([]byte{wireVersion, byte(kindCounts)}, make([]byte, idLen+10)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, id, recs, err := decode(b)
		if err != nil {
			return
		}
		if k != kindCounts {
			if !bytes.Equal(encodeSignal(k, id), b) {
				t.Fatalf("signal %d decoded from %x", k, b)
			}
			return
		}
		for _, r := range recs {
			if !validKey(r.key) || r.count < 0 || r.count > maxCount {
				t.Fatalf("decoded an invalid record %+v", r)
			}
		}
		msgs := encode(id, recs, 1<<30)
		if len(msgs) != 1 {
			t.Fatalf("%d messages re-encoding %d records", len(msgs), len(recs))
		}
		k2, id2, recs2, err := decode(msgs[0])
		if err != nil || k2 != k || id2 != id || !reflect.DeepEqual(recs2, recs) {
			t.Fatalf("round trip: %v %v, want %v", err, recs2, recs)
		}
	})
}
