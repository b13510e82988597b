package natsstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/opfilter"
)

// chain is an event's log as lifecycle writes it: entry i (0-based) carries op-i at sequence
// 10·(i+1) (other events' entries lie between), and the op filter of the ops before it.
type chain struct {
	entries map[uint64]*logsign.Entry
	head    *logsign.Entry
	reads   int
}

func newChain(t *testing.T, n int) *chain {
	t.Helper()
	c := &chain{entries: map[uint64]*logsign.Entry{}}
	f := opfilter.New()
	for i := range n {
		seq := uint64(10 * (i + 1))
		op := fmt.Sprint("op-", i)
		c.head = &logsign.Entry{Subject: "evt", Seq: seq, Rec: &busv1.EventRecorded{
			Envelope: &busv1.Envelope{OpId: op},
			OpFilter: f.Encode(),
		}}
		c.entries[seq] = c.head
		f.Add(op, seq, 1000, time.Hour)
	}
	return c
}

func (c *chain) at(_ context.Context, seq uint64) (*logsign.Entry, error) {
	c.reads++
	return c.entries[seq], nil
}

func (c *chain) headFilter(t *testing.T) *opfilter.Filter {
	t.Helper()
	f, err := opfilter.Decode(c.head.Rec.GetOpFilter())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestWalkBackReadsOneEntryPer32Ops: a lookup past the exact list reads the event's own
// entries only, one for every 32 ops it goes back, and stops at from.
func TestWalkBackReadsOneEntryPer32Ops(t *testing.T) {
	t.Parallel()
	const n = 1000 // the head is op-999; its exact list holds op-967..op-998
	for _, tt := range []struct {
		name     string
		op       string
		from     uint64
		wantSeq  uint64 // 0: not found
		maxReads int
	}{
		{"just past the exact list", "op-966", 1, 9670, 2},
		{"the event's first op", "op-0", 1, 10, n/32 + 2},
		{"a new op, from the first entry", "op-new", 1, 0, n/32 + 1},
		{"a new op, from op-900 on", "op-new", 9010, 0, 100/32 + 2},
		{"an op before from is not looked for", "op-5", 9010, 0, 100/32 + 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newChain(t, n)
			found, broken, err := walkBack(t.Context(), c.headFilter(t), tt.op, tt.from, c.at)
			if err != nil || broken != 0 {
				t.Fatalf("walkBack: broken %d, %v", broken, err)
			}
			switch {
			case tt.wantSeq == 0 && found != nil:
				t.Fatalf("found %s at %d, want nothing", found.Rec.GetEnvelope().GetOpId(), found.Seq)
			case tt.wantSeq != 0 && (found == nil || found.Seq != tt.wantSeq || found.Rec.GetEnvelope().GetOpId() != tt.op):
				t.Fatalf("found %v, want %s at %d", found, tt.op, tt.wantSeq)
			}
			if c.reads > tt.maxReads {
				t.Fatalf("%d reads, want ≤ %d", c.reads, tt.maxReads)
			}
		})
	}
}

// TestWalkBackFindsEveryOp: every op of the event is found, whatever its place in the chain.
func TestWalkBackFindsEveryOp(t *testing.T) {
	t.Parallel()
	const n = 300
	c := newChain(t, n)
	f := c.headFilter(t)
	for i := range n - 33 { // the 33 newest are the head and its exact list: FindOp reads those
		op := fmt.Sprint("op-", i)
		found, broken, err := walkBack(t.Context(), f, op, 1, c.at)
		if err != nil || broken != 0 || found == nil || found.Rec.GetEnvelope().GetOpId() != op {
			t.Fatalf("%s: found %v, broken %d, %v", op, found, broken, err)
		}
	}
}

// TestWalkBackStopsWhereTheChainBreaks: an entry without a filter (written before filters
// existed) or one that cannot be read is where the walk hands over to a scan.
func TestWalkBackStopsWhereTheChainBreaks(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		breakAt func(*logsign.Entry) *logsign.Entry
	}{
		{"no filter", func(e *logsign.Entry) *logsign.Entry {
			return &logsign.Entry{Subject: e.Subject, Seq: e.Seq, Rec: &busv1.EventRecorded{Envelope: e.Rec.GetEnvelope()}}
		}},
		{"unreadable (not lifecycle's)", func(*logsign.Entry) *logsign.Entry { return nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newChain(t, 200)
			const at = 1040 // op-103: the walk from the head (op-199) reads op-167, op-135, op-103, …
			c.entries[at] = tt.breakAt(c.entries[at])
			found, broken, err := walkBack(t.Context(), c.headFilter(t), "op-3", 1, c.at)
			if err != nil || found != nil || broken != at {
				t.Fatalf("found %v, broken %d, %v; want the break at %d", found, broken, err, at)
			}
		})
	}
}
