package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStrictJSON: a key given twice is refused, never resolved to one of its values (a proxy that
// keeps the first would see another request than the one acted on), and an integer beyond
// ±(2^53−1) is refused with the field's code instead of being stored rounded (DESIGN.md §8.4).
func TestStrictJSON(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)
	base := `"channel_id":"` + ch + `","password":"secret-123","status":"running","message":"m","severity":"normal"`
	tests := []struct {
		name, body, code, names string
	}{
		{"top-level key twice", `{` + base + `,"title":"a","title":"b","event_time":1713750000000}`, "duplicate_field", `"title"`},
		{"password twice", `{` + base + `,"password":"other-pass","title":"a","event_time":1713750000000}`, "duplicate_field", `"password"`},
		{"attrs key twice", `{` + base + `,"title":"a","event_time":1713750000000,"attrs":{"v":1,"v":2}}`, "duplicate_field", `"attrs.v"`},
		{"event_time 2^53+1", `{` + base + `,"title":"a","event_time":9007199254740993}`, "invalid_event_time", "event_time"},
		{"event_time 2^53", `{` + base + `,"title":"a","event_time":9007199254740992}`, "invalid_event_time", "event_time"},
		{"event_time -(2^53+1)", `{` + base + `,"title":"a","event_time":-9007199254740993}`, "invalid_event_time", "event_time"},
		{"started_at 2^53+1", `{` + base + `,"title":"a","event_time":1713750000000,"started_at":9007199254740993}`, "invalid_started_at", "started_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := g.request(t, http.MethodPost, "/event/create", "application/json", []byte(tt.body), nil)
			if r.status != http.StatusBadRequest || r.code() != tt.code || !strings.Contains(*r.env.Error, tt.names) {
				t.Fatalf("got %d %s, want 400 %s naming %s: %s", r.status, r.code(), tt.code, tt.names, r.raw)
			}
		})
	}
	// The largest exact integer is accepted and read back as sent.
	body := `{` + base + `,"title":"a","event_time":9007199254740991}`
	r := g.request(t, http.MethodPost, "/event/create", "application/json", []byte(body), nil)
	if r.status != http.StatusOK {
		t.Fatalf("2^53-1: %d %s", r.status, r.raw)
	}
	got := g.post(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": r.data(t)["event_id"]})
	var ev struct {
		EventTime json.Number `json:"event_time"`
	}
	if err := json.Unmarshal(got.env.Data, &ev); err != nil || ev.EventTime != "9007199254740991" {
		t.Fatalf("event_time read back as %q (%v): %s", ev.EventTime, err, got.raw)
	}
}

// TestSlowBodyIsCut: clients that trickle their bodies are answered 408 request_timeout and
// disconnected once the body timeout has passed, while other clients are served meanwhile
// (DESIGN.md §8.3). Before, only the headers had a deadline and such connections stayed open as
// long as the client kept sending.
func TestSlowBodyIsCut(t *testing.T) {
	t.Parallel()
	const bodyTimeout = time.Second
	g := startGateway(t, gatewayOpts{bodyTimeout: bodyTimeout})
	addr := strings.TrimPrefix(g.url, "http://")
	const conns = 50
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Go(func() {
			if err := trickle(t, addr, i); err != nil {
				errs <- err
			}
		})
	}
	// Served meanwhile.
	g.channel(t)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("slow bodies were cut after %s, want about %s", took, bodyTimeout)
	}
}

// trickle sends a request whose 200-byte body comes one byte every 100 ms (it would take 20 s)
// and expects a 408 request_timeout answer and the connection closed within 8 s.
func trickle(t *testing.T, addr string, i int) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if _, err := fmt.Fprintf(conn, "POST /channel/create HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{", addr); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range 199 {
			select {
			case <-stop:
				return
			case <-t.Context().Done():
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(8 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("conn %d: no answer to a trickled body: %w", i, err)
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil || env.ErrorCode == nil {
		return fmt.Errorf("conn %d: %d %q is not an error envelope", i, resp.StatusCode, raw)
	}
	seenCodes.Store(*env.ErrorCode, true)
	if resp.StatusCode != http.StatusRequestTimeout || *env.ErrorCode != "request_timeout" {
		return fmt.Errorf("conn %d: got %d %s, want 408 request_timeout", i, resp.StatusCode, *env.ErrorCode)
	}
	// The server closes the connection after the answer.
	if _, err := br.ReadByte(); err == nil {
		return fmt.Errorf("conn %d: connection still open after 408", i)
	}
	return nil
}
