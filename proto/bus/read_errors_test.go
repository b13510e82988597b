package bus_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
)

// A read answered "JetStream system temporarily unavailable" (503) — as streams answer while
// they elect a leader — must count as transient, so that callers retry it instead of taking it
// for a permanent failure; other errors must not.
func TestReadErrorsAreClassified(t *testing.T) {
	t.Parallel()
	// A plain server, no JetStream: the test answers the API requests itself.
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	for _, tt := range []struct {
		name      string
		status    string // direct get
		body      string // leader get
		transient bool
	}{
		{"unavailable", "503", `{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}`, true},
		{"timeout", "408", `{"error":{"code":408,"err_code":10001,"description":"request timeout"}}`, true},
		{"bad request", "400", `{"error":{"code":400,"err_code":10003,"description":"bad request"}}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stream := "S_" + tt.status
			leader, err := nc.Subscribe("$JS.API.STREAM.MSG.GET."+stream, func(m *nats.Msg) { _ = m.Respond([]byte(tt.body)) })
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = leader.Unsubscribe() })
			direct, err := nc.Subscribe("$JS.API.DIRECT.GET."+stream+".>", func(m *nats.Msg) {
				reply := nats.NewMsg(m.Reply)
				reply.Header.Set("Status", tt.status)
				reply.Header.Set("Description", tt.name)
				_ = m.RespondMsg(reply)
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = direct.Unsubscribe() })
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}

			_, err = bus.LastMsg(t.Context(), nc, stream, "a.b")
			if err == nil || bus.Transient(err) != tt.transient {
				t.Errorf("LastMsg: err %v, transient %v, want %v", err, bus.Transient(err), tt.transient)
			}
			_, err = bus.DirectLastMsg(t.Context(), nc, stream, "a.b")
			if err == nil || bus.Transient(err) != tt.transient {
				t.Errorf("DirectLastMsg: err %v, transient %v, want %v", err, bus.Transient(err), tt.transient)
			}
		})
	}
}
