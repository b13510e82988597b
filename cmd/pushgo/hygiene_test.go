package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestSecretsStayOffTheBusAndOutOfLogs runs every event route, right and wrong, with debug
// logging, while recording every message that crosses the NATS server: neither the channel
// password nor the gateway token may appear in either.
func TestSecretsStayOffTheBusAndOutOfLogs(t *testing.T) {
	t.Parallel()
	const password, token = "hunter2-SECRET-pw", "gw-TOKEN-42"
	logs := &syncBuffer{}
	g := startGateway(t, gatewayOpts{token: token, logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})

	var mu sync.Mutex
	var captured [][]byte
	tap, err := nats.Connect(g.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tap.Close)
	if _, err := tap.Subscribe(">", func(m *nats.Msg) {
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %v ", m.Subject, m.Header)
		b.Write(m.Data)
		mu.Lock()
		captured = append(captured, b.Bytes())
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := tap.Flush(); err != nil {
		t.Fatal(err)
	}

	auth := map[string]string{"Authorization": "Bearer " + token}
	post := func(path string, body obj) response {
		return g.request(t, "POST", path, "application/json", mustJSON(t, body), auth)
	}
	c := post("/channel/create", obj{"channel_name": "secret", "password": password})
	ch := c.data(t)["channel_id"].(string)
	body := createBody(ch, obj{"password": password, "op_id": "s-1", "metadata": obj{"k": "v"}, "ciphertext": "opaque"})
	ev := post("/event/create", body).data(t)["event_id"].(string)
	post("/event/create", body)
	post("/event/update", opBody(ch, ev, obj{"password": password}))
	post("/event/update", opBody(ch, ev, obj{"password": password + "-wrong"}))
	post("/event/close", opBody(ch, ev, obj{"password": password}))
	post("/event/get", obj{"channel_id": ch, "password": password, "event_id": ev})
	post("/event/history", obj{"channel_id": ch, "password": password, "event_id": ev})
	post("/event/list", obj{"channel_id": ch, "password": password})
	g.request(t, "POST", "/event/get", "application/json", []byte(`{}`), map[string]string{"Authorization": "Bearer " + token + "x"})
	if err := tap.Flush(); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	sawCommand := false
	for _, m := range captured {
		if bytes.Contains(m, []byte(password)) || bytes.Contains(m, []byte(token)) {
			t.Fatalf("a secret crossed the bus: %q", m)
		}
		sawCommand = sawCommand || bytes.HasPrefix(m, []byte(g.layout().CommandSubject(ch, ev)))
	}
	if !sawCommand || len(captured) < 10 {
		t.Fatalf("the tap saw %d messages and no command: it does not see the bus", len(captured))
	}
	if l := logs.String(); strings.Contains(l, password) || strings.Contains(l, token) || !strings.Contains(l, "level") {
		t.Fatalf("a secret is in the logs (or nothing was logged):\n%s", l)
	}
}

// TestNoLeftoversPerRequest checks that requests leave no goroutine or NATS subscription
// behind. It does not run in parallel, so the process holds only this test's gateway.
func TestNoLeftoversPerRequest(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)
	round := func(i int) {
		ev := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": fmt.Sprint("leak-", i)}))["event_id"].(string)
		g.mustOK(t, "/event/update", opBody(ch, ev, nil))
		g.post(t, "/event/update", opBody(ch, "missing", nil))
		g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
		g.mustOK(t, "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
		g.mustOK(t, "/event/list", obj{"channel_id": ch, "password": "secret-123", "limit": 5})
	}
	subs := func() int {
		g.mu.Lock()
		defer g.mu.Unlock()
		n := 0
		for _, nc := range g.conns {
			n += nc.NumSubscriptions()
		}
		return n
	}
	for i := range 10 {
		round(i)
	}
	baseGoroutines, baseSubs := runtime.NumGoroutine(), subs()
	for i := range 100 {
		round(100 + i)
	}
	var got int
	eventually(t, 10*time.Second, "goroutines to settle", func() bool {
		got = runtime.NumGoroutine()
		return got <= baseGoroutines+5
	})
	if s := subs(); s != baseSubs {
		t.Fatalf("NATS subscriptions grew from %d to %d over 600 requests", baseSubs, s)
	}
	t.Logf("goroutines %d before, %d after 600 requests; subscriptions %d", baseGoroutines, got, baseSubs)
}
