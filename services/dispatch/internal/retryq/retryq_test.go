package retryq_test

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/dispatch/internal/retryq"
)

func TestParseSchedule(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    retryq.Schedule
		wantErr bool
	}{
		{in: retryq.DefaultSchedule, want: retryq.Schedule{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 24 * time.Hour}},
		{in: " 1s, 2m ", want: retryq.Schedule{time.Second, 2 * time.Minute}},
		{in: "none", want: nil},
		{in: "", want: nil},
		{in: "5", wantErr: true},
		{in: "5s,,5m", wantErr: true},
		{in: "500ms", wantErr: true},
		{in: "73h", wantErr: true},
		{in: "-5s", wantErr: true},
	} {
		got, err := retryq.ParseSchedule(tc.in)
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSchedule(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	s := retryq.Schedule{time.Second, time.Minute}
	if d, ok := s.Delay(1); !ok || d != time.Minute {
		t.Errorf("Delay(1) = %s, %v", d, ok)
	}
	if _, ok := s.Delay(2); ok {
		t.Error("Delay past the end is ok")
	}
}

// TestScheduleSurvivesABrokerRestart writes a task due in 2 s, restarts the broker on the same
// store before it is due, and takes it once it fires: not before its time, exactly once, and a
// second Add for the same delivery replaces the first.
func TestScheduleSurvivesABrokerRestart(t *testing.T) {
	dir := t.TempDir()
	s := bustest.RunServerAt(t, dir, -1)
	nc, js := connect(t, s.ClientURL())
	if err := bus.Provision(t.Context(), js, bus.Options{}); err != nil {
		t.Fatal(err)
	}
	q := retryq.New(js, retryq.Schedule{time.Second}, slog.New(slog.DiscardHandler))
	task := &busv1.RetryTask{ChannelId: "c", OpId: "o", DeliveryId: "0123456789abcdef0123456789abcdef", Step: 0}
	began := time.Now()
	if _, err := q.Add(t.Context(), task, began.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	task.Step = 1
	due, err := q.Add(t.Context(), task, began.Add(2*time.Second)) // replaces the schedule above
	if err != nil {
		t.Fatal(err)
	}
	if due.Before(began.Add(2*time.Second)) || due.Sub(began) > 3*time.Second || due.Nanosecond() != 0 {
		t.Fatalf("due %s for 2 s after %s", due, began)
	}
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()

	s = bustest.RunServerAt(t, dir, -1)
	_, js = connect(t, s.ClientURL())
	q = retryq.New(js, retryq.Schedule{time.Second}, slog.New(slog.DiscardHandler))
	cons, err := q.Consumer(t.Context(), 4)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []*busv1.RetryTask
	var at []time.Time
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, cons, 4, func(_ context.Context, task *busv1.RetryTask) error {
			mu.Lock()
			defer mu.Unlock()
			got, at = append(got, task), append(at, time.Now())
			return nil
		})
	}()
	bustest.Eventually(t, 15*time.Second, "the scheduled task", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	// Nothing is left to fire again: the fired schedule was purged, the one it replaced is
	// gone, and the due task left the work queue when it was acked.
	st, err := js.Stream(t.Context(), bus.StreamRetries)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 5*time.Second, "the retry stream empty", func() bool {
		info, err := st.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].GetStep() != 1 || got[0].GetDeliveryId() != task.GetDeliveryId() {
		t.Fatalf("tasks taken: %v", got)
	}
	if at[0].Before(due) {
		t.Fatalf("task taken at %s, before it was due (%s)", at[0], due)
	}
}

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestScheduleSurvivesItsLeadersDeath: in a 3-node cluster with the schedule stream replicated
// 3 times, a task scheduled before its stream's leader dies is fired by the new leader.
func TestScheduleSurvivesItsLeadersDeath(t *testing.T) {
	servers := bustest.RunCluster(t, "retries")
	_, js := connect(t, servers[0].ClientURL())
	var st jetstream.Stream
	var err error
	bustest.Eventually(t, 30*time.Second, "the stream, once the cluster has a meta leader", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		st, err = js.CreateStream(ctx, retriesConfig(t))
		return err == nil
	})
	q := retryq.New(js, retryq.Schedule{time.Second}, slog.New(slog.DiscardHandler))
	task := &busv1.RetryTask{ChannelId: "c", OpId: "o", DeliveryId: "fedcba9876543210fedcba9876543210"}
	due, err := q.Add(t.Context(), task, time.Now().Add(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream info: %v %v", info, err)
	}
	var survivor string
	for _, s := range servers {
		if s.Name() == info.Cluster.Leader {
			s.Shutdown() // the leader dies before the task is due
			s.WaitForShutdown()
		} else {
			survivor = s.ClientURL()
		}
	}
	_, js = connect(t, survivor)
	q = retryq.New(js, retryq.Schedule{time.Second}, slog.New(slog.DiscardHandler))
	var cons jetstream.Consumer
	bustest.Eventually(t, 20*time.Second, "the retry consumer after the election", func() bool {
		cons, err = q.Consumer(t.Context(), 2)
		return err == nil
	})
	got := make(chan *busv1.RetryTask, 4)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, cons, 2, func(_ context.Context, task *busv1.RetryTask) error { got <- task; return nil })
	}()
	select {
	case task := <-got:
		if task.GetDeliveryId() != "fedcba9876543210fedcba9876543210" || time.Now().Before(due) {
			t.Fatalf("task %v at %s, due %s", task, time.Now(), due)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the new leader never fired the schedule")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// retriesConfig is PUSHGO_RETRIES as bus provisions it, with 3 replicas.
func retriesConfig(t *testing.T) jetstream.StreamConfig {
	t.Helper()
	for _, c := range bus.StreamConfigs(bus.Options{Replicas: 3}) {
		if c.Name == bus.StreamRetries {
			return c
		}
	}
	t.Fatal("no PUSHGO_RETRIES in bus.StreamConfigs")
	return jetstream.StreamConfig{}
}
