package opfilter_test

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/opfilter"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const (
	window = 24 * time.Hour
	w      = int64(24 * time.Hour / time.Millisecond) // window in ms
	t0     = int64(1_700_000_000_000)                 // a Unix ms
)

// op is one Add.
type op struct {
	id  string
	seq uint64
	at  int64
}

// ops returns n ops named prefix0.., with sequences from seq on, all at time at.
func ops(prefix string, n int, seq uint64, at int64) []op {
	out := make([]op, n)
	for i := range out {
		out[i] = op{id: fmt.Sprintf("%s%d", prefix, i), seq: seq + uint64(i), at: at}
	}
	return out
}

// join concatenates op lists, to read a history top to bottom.
func join(lists ...[]op) []op {
	var out []op
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// resultName spells a Result in failure messages; the package exports no String method.
func resultName(r opfilter.Result) string {
	return [...]string{"Absent", "Exact", "Maybe"}[r]
}

func build(history []op) *opfilter.Filter {
	f := opfilter.New()
	for _, o := range history {
		f.Add(o.id, o.seq, o.at, window)
	}
	return f
}

func mustDecode(t testing.TB, b []byte) *opfilter.Filter {
	t.Helper()
	f, err := opfilter.Decode(b)
	if err != nil {
		t.Fatalf("Decode(%d bytes): %v", len(b), err)
	}
	return f
}

func TestLookup(t *testing.T) {
	t.Parallel()
	// X is the op under test; fillers push it off the exact list (32 entries) into a Bloom.
	x := func(seq uint64, at int64) []op { return []op{{id: "X", seq: seq, at: at}} }
	tests := []struct {
		name    string
		history []op
		query   string
		want    opfilter.Result
		wantSeq uint64
	}{
		{name: "empty filter", query: "X", want: opfilter.Absent},
		{name: "one op", history: x(7, t0), query: "X", want: opfilter.Exact, wantSeq: 7},
		{name: "other op", history: x(7, t0), query: "Y", want: opfilter.Absent},
		{name: "32 ops keep the oldest exact", history: join(x(1, t0), ops("f", 31, 2, t0)), query: "X", want: opfilter.Exact, wantSeq: 1},
		{name: "33rd op evicts the oldest", history: join(x(1, t0), ops("f", 32, 2, t0)), query: "X", want: opfilter.Maybe, wantSeq: 1},
		{name: "newest after 40 ops", history: join(ops("f", 39, 1, t0), x(40, t0)), query: "X", want: opfilter.Exact, wantSeq: 40},
		{name: "second oldest after 33 ops", history: ops("f", 33, 1, t0), query: "f1", want: opfilter.Exact, wantSeq: 2},
		{name: "never added after 40 ops", history: ops("f", 40, 1, t0), query: "X", want: opfilter.Absent},
		{
			name:    "evicted op found half a window later",
			history: join(x(1, t0), ops("f", 32, 2, t0), ops("g", 1, 100, t0+w/2)),
			query:   "X", want: opfilter.Maybe, wantSeq: 1,
		},
		{
			name:    "evicted op found one ms short of a window",
			history: join(x(1, t0), ops("f", 32, 2, t0), ops("g", 1, 100, t0+w-1)),
			query:   "X", want: opfilter.Maybe, wantSeq: 1,
		},
		{
			name:    "evicted op found after one roll",
			history: join(x(1, t0), ops("f", 32, 2, t0), ops("g", 1, 100, t0+w)),
			query:   "X", want: opfilter.Maybe, wantSeq: 1,
		},
		{
			// The generation starts at t0 with a0; X arrives and leaves the exact list at
			// t0+w/2-1, and is asked for a window later. Half-window generations would roll
			// at t0+w/2 and t0+w and drop X at t0+w, half a window after it arrived. a0
			// shares X's generation, so the scan starts at a0's sequence.
			name: "op evicted late in a generation is kept a full window",
			history: join(ops("a", 1, 1, t0), x(2, t0+w/2-1), ops("f", 32, 3, t0+w/2-1),
				ops("g", 1, 100, t0+w/2), ops("h", 1, 101, t0+w), ops("i", 1, 102, t0+3*w/2-2)),
			query: "X", want: opfilter.Maybe, wantSeq: 1,
		},
		{
			name:    "two rolls drop it",
			history: join(x(1, t0), ops("f", 32, 2, t0), ops("g", 1, 100, t0+w), ops("h", 1, 101, t0+2*w)),
			query:   "X", want: opfilter.Absent,
		},
		{
			name:    "a gap of two windows drops it",
			history: join(x(1, t0), ops("f", 32, 2, t0), ops("g", 1, 100, t0+2*w)),
			query:   "X", want: opfilter.Absent,
		},
		{
			name:    "a gap just short of two windows keeps it",
			history: join(x(1, t0), ops("f", 32, 2, t0), ops("g", 1, 100, t0+2*w-1)),
			query:   "X", want: opfilter.Maybe, wantSeq: 1,
		},
		{
			// X stays exact across the gap; the generation it falls into starts at t0+2w,
			// yet the scan must start at X's own sequence.
			name:    "minSeq is the evicted op's, older than its generation",
			history: join(x(10, t0), ops("f", 31, 11, t0), ops("g", 1, 100, t0+2*w)),
			query:   "X", want: opfilter.Maybe, wantSeq: 10,
		},
		{
			name:    "minSeq stays the lowest added",
			history: join(x(10, t0), ops("f", 31, 11, t0), ops("g", 2, 100, t0+2*w)),
			query:   "f0", want: opfilter.Maybe, wantSeq: 10,
		},
		{
			// a0..a7 (seq 1..8) fill the previous generation; a8..a39 and b0..b7 fill the
			// current one, whose lowest sequence is 9.
			name:    "Maybe in the previous generation scans from its minSeq",
			history: join(ops("a", 40, 1, t0), ops("b", 40, 101, t0+w)),
			query:   "a3", want: opfilter.Maybe, wantSeq: 1,
		},
		{
			name:    "Maybe in the current generation only scans from its minSeq",
			history: join(ops("a", 40, 1, t0), ops("b", 40, 101, t0+w)),
			query:   "b5", want: opfilter.Maybe, wantSeq: 9,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := build(tt.history)
			for _, g := range []*opfilter.Filter{f, mustDecode(t, f.Encode())} {
				got, gotSeq := g.Lookup(tt.query)
				if got != tt.want || gotSeq != tt.wantSeq {
					t.Errorf("Lookup(%q) = %s, %d; want %s, %d", tt.query, resultName(got), gotSeq, resultName(tt.want), tt.wantSeq)
				}
			}
		})
	}
}

// randomID returns an op_id of 1..128 arbitrary bytes, as clients may choose.
func randomID(r *rand.Rand) string {
	b := make([]byte, 1+r.IntN(128))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// TestOldest: the oldest op on the exact list, which the chain of exact lists goes back by.
func TestOldest(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ops    int
		want   uint64
		wantOK bool
	}{
		{0, 0, false},
		{1, 10, true},
		{32, 10, true},
		{33, 20, true},
		{100, 690, true}, // ops 69..100 at 10·i
	} {
		f := opfilter.New()
		for i := 1; i <= tt.ops; i++ {
			f.Add(fmt.Sprint("op-", i), uint64(10*i), 1000, time.Hour)
		}
		g, err := opfilter.Decode(f.Encode())
		if err != nil {
			t.Fatal(err)
		}
		if seq, ok := g.Oldest(); seq != tt.want || ok != tt.wantOK {
			t.Errorf("%d ops: Oldest() = %d, %v; want %d, %v", tt.ops, seq, ok, tt.want, tt.wantOK)
		}
	}
}

func TestFalsePositiveRate(t *testing.T) {
	t.Parallel()
	const bloomOps, probes = 800, 10_000
	r := rand.New(rand.NewPCG(1, 2))
	added := make(map[string]bool)
	f := opfilter.New()
	for i := range bloomOps + 32 {
		id := randomID(r)
		added[id] = true
		f.Add(id, uint64(i+1), t0, window)
	}
	for id := range added {
		if got, _ := f.Lookup(id); got == opfilter.Absent {
			t.Fatalf("added op %q: Absent", id)
		}
	}
	hits := 0
	for range probes {
		id := randomID(r)
		if added[id] {
			continue
		}
		if got, _ := f.Lookup(id); got != opfilter.Absent {
			hits++
		}
	}
	rate := float64(hits) / probes
	t.Logf("false positives after %d Bloom ops: %d/%d = %.2f%%", bloomOps, hits, probes, 100*rate)
	if rate >= 0.02 {
		t.Errorf("false positive rate %.2f%%, want < 2%%", 100*rate)
	}
}

// TestNoFalseAbsent replays a long history with irregular gaps through the encoding, as
// lifecycle does, and checks after each op that every op of the last window is still found.
// Gaps near half a window catch generations that roll too early.
func TestNoFalseAbsent(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	gaps := []int64{w / 7, w/2 - 1, w / 2, w - 1, w, w + 1}
	var history []op
	enc := opfilter.New().Encode()
	now := t0
	for i := range 3000 {
		// Mostly short gaps, so that ops leave the exact list well within the window.
		if r.IntN(20) == 0 {
			now += gaps[r.IntN(len(gaps))]
		} else {
			now += r.Int64N(w / 100)
		}
		o := op{id: randomID(r), seq: uint64(10 + 3*i), at: now}
		f := mustDecode(t, enc)
		if got, _ := f.Lookup(o.id); got == opfilter.Exact {
			t.Fatalf("op %d: new id found Exact", i)
		}
		f.Add(o.id, o.seq, o.at, window)
		enc = f.Encode()
		history = append(history, o)
		f = mustDecode(t, enc)
		for j := len(history) - 1; j >= 0 && now-history[j].at < w; j-- {
			h := history[j]
			got, seq := f.Lookup(h.id)
			switch {
			case got == opfilter.Absent:
				t.Fatalf("after op %d: op seq %d added %d ms ago: Absent", i, h.seq, now-h.at)
			case got == opfilter.Exact && seq != h.seq:
				t.Fatalf("after op %d: op seq %d: Exact at %d", i, h.seq, seq)
			case got == opfilter.Maybe && seq > h.seq:
				t.Fatalf("after op %d: op seq %d: Maybe from %d, past it", i, h.seq, seq)
			}
		}
	}
}

// filters are the shapes of filter the encoding tests use.
func filters() map[string]*opfilter.Filter {
	return map[string]*opfilter.Filter{
		"empty":        opfilter.New(),
		"one":          build(ops("a", 1, 1, t0)),
		"exact full":   build(ops("a", 32, 1, t0)),
		"one evicted":  build(ops("a", 33, 1, t0)),
		"two gens":     build(join(ops("a", 40, 1, t0), ops("b", 40, 101, t0+w))),
		"empty prev":   build(join(ops("a", 10, 1, t0), ops("b", 30, 101, t0+w))),
		"full":         build(join(ops("a", 900, 1, t0), ops("b", 900, 1001, t0+w))),
		"negative now": build(ops("a", 40, 1, -5)),
		"huge seq":     build(ops("a", 40, 1<<64-41, t0)),
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for name, f := range filters() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			enc := f.Encode()
			g := mustDecode(t, enc)
			if again := g.Encode(); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, enc)
			}
			queries := []string{"a0", "a5", "a32", "a39", "a899", "b0", "b39", "b899", "zz", ""}
			for _, q := range queries {
				wantRes, wantSeq := f.Lookup(q)
				if gotRes, gotSeq := g.Lookup(q); gotRes != wantRes || gotSeq != wantSeq {
					t.Errorf("Lookup(%q) = %s, %d after round trip; want %s, %d", q, resultName(gotRes), gotSeq, resultName(wantRes), wantSeq)
				}
			}
		})
	}
}

func TestEncodedSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		f       *opfilter.Filter
		atMost  int
		atLeast int
	}{
		{name: "empty", f: opfilter.New(), atLeast: 1, atMost: 4},
		// Sequences of a busy stream: 5-byte varints.
		{name: "32 ops", f: build(ops("a", 32, 1<<32, t0)), atLeast: 32 * 8, atMost: 32*13 + 12},
		{name: "full", f: filters()["full"], atLeast: 2 * 1024, atMost: 2500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := len(tt.f.Encode())
			t.Logf("%d bytes", n)
			if n < tt.atLeast || n > tt.atMost {
				t.Errorf("encoded size %d, want %d..%d", n, tt.atLeast, tt.atMost)
			}
		})
	}
}

// TestGolden pins the encoding, hash included: filters already in the log must decode to the
// same answers in every later build.
func TestGolden(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"one", "two gens"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := filters()[name].Encode()
			path := filepath.Join("testdata", strings.ReplaceAll(name, " ", "_")+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoding changed (run with -update only if old filters need no reading):\n got %x\nwant %x", got, want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	valid := filters()["two gens"].Encode()
	oneGen := filters()["one"].Encode() // 1, 1, hash, seq 1, gen 1 start, gen 0
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{name: "nil", in: nil, wantErr: "empty"},
		{name: "empty", in: []byte{}, wantErr: "empty"},
		{name: "version 0", in: []byte{0, 0, 0, 0}, wantErr: "version 0"},
		{name: "version 2", in: append([]byte{2}, valid[1:]...), wantErr: "version 2"},
		{name: "trailing byte", in: append(bytes.Clone(valid), 0), wantErr: "trailing"},
		{name: "too long", in: append(bytes.Clone(valid), make([]byte, 4096)...), wantErr: "more than 4096"},
		{name: "33 exact entries", in: []byte{1, 33}, wantErr: "exact count"},
		{name: "huge exact count", in: []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0}, wantErr: "exact count"},
		{name: "non-minimal count", in: []byte{1, 0x80, 0x00, 0, 0}, wantErr: "exact count"},
		{name: "unknown generation tag", in: []byte{1, 0, 3, 0}, wantErr: "generation tag"},
		{name: "previous without current", in: []byte{1, 0, 0, 1, 2}, wantErr: "previous generation"},
		{name: "short bloom", in: append([]byte{1, 0, 2, 2, 1}, make([]byte, 1023)...), wantErr: "bloom"},
		{name: "bloom then missing tag", in: append([]byte{1, 0, 2, 2, 1}, make([]byte, 1024)...), wantErr: "generation tag"},
		{name: "overlong seq varint", in: append(append(bytes.Clone(oneGen[:10]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), 0, 0), wantErr: "exact seq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := opfilter.Decode(tt.in)
			if err == nil {
				t.Fatalf("Decode(%x) = %v, want an error", tt.in, f)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Decode error %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecodeRejectsTruncated(t *testing.T) {
	t.Parallel()
	for name, f := range filters() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			enc := f.Encode()
			for n := range len(enc) {
				if g, err := opfilter.Decode(enc[:n]); err == nil {
					t.Fatalf("Decode of the first %d of %d bytes = %v, want an error", n, len(enc), g)
				}
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, fl := range filters() {
		f.Add(fl.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 2, 0x80, 0x80, 0x01, 0})
	probes := []string{"a0", "a1", "a39", "b0", "b5", "b899", "x", ""}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := opfilter.Decode(b)
		if err != nil {
			return
		}
		enc := g.Encode()
		if !bytes.Equal(enc, b) {
			t.Fatalf("accepted %x but re-encodes to %x", b, enc)
		}
		h := mustDecode(t, enc)
		for _, q := range probes {
			r1, s1 := g.Lookup(q)
			if r2, s2 := h.Lookup(q); r1 != r2 || s1 != s2 {
				t.Fatalf("Lookup(%q) = %s, %d, after re-encoding %s, %d", q, resultName(r1), s1, resultName(r2), s2)
			}
		}
		// Lifecycle appends to whatever it decoded: that must stay decodable.
		g.Add("new", 1<<40, t0, window)
		if got, seq := g.Lookup("new"); got != opfilter.Exact || seq != 1<<40 {
			t.Fatalf("Lookup of the op just added = %s, %d", resultName(got), seq)
		}
		mustDecode(t, g.Encode())
	})
}

// BenchmarkAddEncodeDecode is lifecycle's per-op cost for a hot event: decode the head's full
// filter, look the new op up, add the head's op, encode.
func BenchmarkAddEncodeDecode(b *testing.B) {
	enc := filters()["full"].Encode()
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		f, err := opfilter.Decode(enc)
		if err != nil {
			b.Fatal(err)
		}
		if got, _ := f.Lookup("op-new"); got == opfilter.Exact {
			b.Fatal("new op found Exact")
		}
		f.Add("op-head", 5000, t0+w+1, window)
		if len(f.Encode()) == 0 {
			b.Fatal("empty encoding")
		}
	}
}
