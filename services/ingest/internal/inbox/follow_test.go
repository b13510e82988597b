package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

const device = "0123456789abcdef0123456789abcdef"

// fixture is an inbox on a fresh server, with a publisher that appends as dispatch does
// (asynchronously, with a message id, so the doorbell carries a reply subject).
type fixture struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	box *Inbox
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	_, nc, js := bustest.Provisioned(t)
	// A long resync: new items must come by the doorbell, not by the periodic re-read.
	box, err := New(t.Context(), nc, js, Options{Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{nc: nc, js: js, box: box}
}

// publish appends the item with delivery id n to the device's inbox and returns its seq.
func (f *fixture) publish(t *testing.T, key string, n int) uint64 {
	t.Helper()
	seq, err := f.append(key, n)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func (f *fixture) append(key string, n int) (uint64, error) {
	id := fmt.Sprintf("%032x", n)
	raw, err := proto.Marshal(&busv1.InboxMessage{DeliveryId: id, Data: map[string]string{"n": fmt.Sprint(n)}})
	if err != nil {
		return 0, err
	}
	fut, err := f.js.PublishAsync(bus.InboxSubject(key), raw, jetstream.WithMsgID(id), jetstream.WithExpectStream(bus.StreamInbox))
	if err != nil {
		return 0, err
	}
	select {
	case ack := <-fut.Ok():
		return ack.Sequence, nil
	case err := <-fut.Err():
		return 0, err
	case <-time.After(10 * time.Second):
		return 0, errors.New("no publish ack within 10s")
	}
}

// following runs Follow until the test ends or stop is called; stop returns Follow's error.
type following struct {
	items chan *apiv1.InboxItem
	stop  func() error
}

func (f *fixture) follow(t *testing.T, key string, after uint64) *following {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	fl := &following{items: make(chan *apiv1.InboxItem, 100)}
	done := make(chan error, 1)
	go func() {
		done <- f.box.Follow(ctx, key, after, func(it *apiv1.InboxItem) error {
			fl.items <- it
			return nil
		})
	}()
	fl.stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("follow did not stop within 10s")
		}
	})
	t.Cleanup(func() { _ = fl.stop() })
	return fl
}

// expect reads the next items and checks their delivery numbers and seqs.
func (fl *following) expect(t *testing.T, want map[uint64]int, order ...uint64) {
	t.Helper()
	for _, seq := range order {
		select {
		case it := <-fl.items:
			if it.GetSeq() != seq || it.GetDeliveryId() != fmt.Sprintf("%032x", want[seq]) || it.GetPayload()["n"] != fmt.Sprint(want[seq]) {
				t.Fatalf("got item seq %d id %s payload %v, want seq %d item %d", it.GetSeq(), it.GetDeliveryId(), it.GetPayload(), seq, want[seq])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no item with seq %d within 10s", seq)
		}
	}
}

// idleSignal makes the fixture's follows report each time they wait with no re-read planned.
func (f *fixture) idleSignal() <-chan struct{} {
	idle := make(chan struct{}, 1)
	f.box.testHookIdle = func() {
		select {
		case idle <- struct{}{}:
		default:
		}
	}
	return idle
}

func waitIdle(t *testing.T, idle <-chan struct{}) {
	t.Helper()
	select {
	case <-idle:
	case <-time.After(15 * time.Second):
		t.Fatal("follow did not settle within 15s")
	}
}

// TestFollowBacklogThenLive: the backlog in order without acked items, then new items as they
// are published (by the doorbell: the periodic re-read is an hour away), with no JetStream
// consumer at any time and no subscription left after the follow ends.
func TestFollowBacklogThenLive(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.box.settle = []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}
	idle := f.idleSignal()
	items := map[uint64]int{}
	for n := 1; n <= 3; n++ {
		items[f.publish(t, device, n)] = n
	}
	f.publish(t, "fedcba9876543210fedcba9876543210", 99) // another device's: never seen
	if removed, err := f.box.Ack(t.Context(), device, fmt.Sprintf("%032x", 2)); err != nil || !removed {
		t.Fatalf("ack: %v %v", removed, err)
	}

	fl := f.follow(t, device, 0)
	fl.expect(t, items, 1, 3)
	waitIdle(t, idle)
	st, err := f.js.Stream(t.Context(), bus.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("a follow holds %d consumers of %s, want none", info.State.Consumers, bus.StreamInbox)
	}
	if n := f.box.bells.subscriptions(); n != 1 {
		t.Fatalf("%d doorbell subscriptions, want 1", n)
	}

	// Live: each new item arrives; a second follow of the device shares the doorbell.
	s4 := f.publish(t, device, 4)
	items[s4] = 4
	fl.expect(t, items, s4)
	fl2 := f.follow(t, device, s4)
	s5, s6 := f.publish(t, device, 5), f.publish(t, device, 6)
	items[s5], items[s6] = 5, 6
	fl.expect(t, items, s5, s6)
	fl2.expect(t, items, s5, s6)
	if n := f.box.bells.subscriptions(); n != 1 {
		t.Fatalf("%d doorbell subscriptions for two follows of one device, want 1", n)
	}
	select {
	case it := <-fl.items:
		t.Fatalf("unexpected item %v", it)
	default:
	}

	if err := fl.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v, want context.Canceled", err)
	}
	if n := f.box.bells.subscriptions(); n != 1 {
		t.Fatalf("%d doorbell subscriptions with one follow left, want 1", n)
	}
	if err := fl2.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v, want context.Canceled", err)
	}
	if n := f.box.bells.subscriptions(); n != 0 {
		t.Fatalf("%d doorbell subscriptions after every follow ended, want 0", n)
	}
}

// TestFollowResumesAfterSeq: a follow from a seq gets only the items after it, then new ones.
func TestFollowResumesAfterSeq(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	items := map[uint64]int{}
	var seqs []uint64
	for n := 1; n <= 4; n++ {
		s := f.publish(t, device, n)
		items[s] = n
		seqs = append(seqs, s)
	}
	fl := f.follow(t, device, seqs[1])
	fl.expect(t, items, seqs[2], seqs[3])
	s5 := f.publish(t, device, 5)
	items[s5] = 5
	fl.expect(t, items, s5)
}

// TestFollowBacklogLargerThanABatch: a backlog of several read batches comes whole, in order.
func TestFollowBacklogLargerThanABatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	items := map[uint64]int{}
	var seqs []uint64
	for n := 1; n <= 2*followBatch+5; n++ {
		s := f.publish(t, device, n)
		items[s] = n
		seqs = append(seqs, s)
	}
	fl := f.follow(t, device, 0)
	fl.expect(t, items, seqs...)
}

// TestFollowSeesItemsPublishedDuringStart: an item stored after the backlog was read and before
// the follow waits is delivered by its doorbell. The re-reads after the start are turned off
// and the periodic one is an hour away, so only a subscription made before the backlog read
// can deliver it.
func TestFollowSeesItemsPublishedDuringStart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.box.settle = nil
	items := map[uint64]int{}
	s1 := f.publish(t, device, 1)
	items[s1] = 1
	var s2 uint64
	var hookErr error
	f.box.testHookBacklogRead = func() { s2, hookErr = f.append(device, 2) } // in Follow, before it waits
	fl := f.follow(t, device, 0)
	fl.expect(t, items, s1)
	select {
	case it := <-fl.items:
		if hookErr != nil {
			t.Fatal(hookErr)
		}
		if it.GetDeliveryId() != fmt.Sprintf("%032x", 2) || it.GetSeq() != s2 {
			t.Fatalf("got %v, want item 2 at seq %d", it, s2)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the item published during the start never came")
	}
}
