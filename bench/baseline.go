package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runBaseline measures the floor of the architecture on this machine: a minimal HTTP server
// that decodes the same JSON and does one synchronous JetStream publish per request (file
// storage, R1, its own embedded server), driven by the same clients.
func runBaseline(ctx context.Context, o options) (*result, error) {
	dir, err := os.MkdirTemp("", "pushgo-baseline-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("baseline NATS not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BASELINE", Subjects: []string{"baseline.>"}, Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 32<<10))
		var req map[string]any
		if err != nil || json.Unmarshal(body, &req) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if _, err := js.Publish(r.Context(), "baseline.event", body); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"success":true,"data":{"event_id":"4f80c8c6c27ea77f3ade913b872a17b0","applied":true,"version":1},"error":null,"error_code":null}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()

	c := newClient("http://"+ln.Addr().String(), o.concurrency)
	drive(ctx, c, o.concurrency, []string{"C"}, time.Now().Add(2*time.Second), 0, 0)
	t0 := time.Now()
	_, lat, sent, errs := drive(ctx, c, o.concurrency, []string{"C"}, t0.Add(o.baseline), 0, 0)
	r := &result{}
	summarise(r, lat, sent, errs, time.Since(t0))
	return r, nil
}
