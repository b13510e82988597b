package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/services/ingest"
)

// Live streams under attack (DESIGN.md §8.2 and §8.3, issue 10 parts 1 and 5).

// natsConn returns the connection a service of the gateway uses.
func (g *gateway) natsConn(t testing.TB, svc string) *nats.Conn {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	nc := g.conns[svc]
	if nc == nil {
		t.Fatalf("no NATS connection of %s", svc)
	}
	return nc
}

// inboxConsumers counts the JetStream consumers of PUSHGO_INBOX.
func (g *gateway) inboxConsumers(t testing.TB) int {
	t.Helper()
	js := g.jetStream(t)
	st, err := js.Stream(t.Context(), bus.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}

// sseStream is an open /device/stream response read line by line.
type sseStream struct {
	resp *http.Response
	r    *bufio.Reader
}

// dialStream sends GET /device/stream (or /device/ws as plain HTTP) and returns the response,
// open; the caller closes its body.
func dialStream(ctx context.Context, client *http.Client, g *gateway, path, key string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url+path+"?device_key="+key, nil)
	if err != nil {
		return nil, err
	}
	return client.Do(req)
}

// openStream opens an SSE stream that must be admitted.
func openStream(ctx context.Context, t testing.TB, client *http.Client, g *gateway, key string) *sseStream {
	t.Helper()
	resp, err := dialStream(ctx, client, g, "/device/stream", key)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		t.Fatalf("stream of %s: %d %s", key, resp.StatusCode, b)
	}
	return &sseStream{resp: resp, r: bufio.NewReader(resp.Body)}
}

// nextMessage reads up to the next "event: message" and returns its data; an error event or
// the end of the stream is an error.
func (s *sseStream) nextMessage() (map[string]any, error) {
	event := ""
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if event != "message" {
				return nil, &streamError{event + " " + line}
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m); err != nil {
				return nil, err
			}
			return m, nil
		}
	}
}

// eventIDOf is the event id of a stream item's payload, "" when it is none.
func eventIDOf(item map[string]any) string {
	p, _ := item["payload"].(map[string]any)
	id, _ := p["event_id"].(string)
	return id
}

type streamError struct{ what string }

func (e *streamError) Error() string { return "stream sent " + e.what }

// TestOneDeviceCannotExhaustStreams: one device opens more live streams than JetStream's
// consumer limit per stream (1000 by default: nats-server's JetStreamLimits.DefaultMaxConsumers,
// which neither bus.Provision nor the embedded server changes), SSE and WebSocket mixed, with
// the per-device limit off. Every one of them gets the next push, another device still streams
// and gets it too, no JetStream consumer exists meanwhile, and after they close nothing is left.
// Before, each stream held an ordered consumer: past the 1000th every stream of every device
// answered "event: error unavailable" (issue 10).
func TestOneDeviceCannotExhaustStreams(t *testing.T) {
	// Not parallel: it holds ~2000 sockets of its own.
	const sseCount, wsCount = 1010, 40
	raiseFileLimit(t, 2*(sseCount+wsCount)+1024)
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)
	hog, victim := g.device(t, "web"), g.device(t, "web")
	g.subscribe(t, hog, ch)
	g.subscribe(t, victim, ch)
	ingestNC := g.natsConn(t, "ingest")
	baseSubs := ingestNC.NumSubscriptions()

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	transport := &http.Transport{MaxIdleConnsPerHost: 1}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	streams := make([]*sseStream, sseCount)
	sockets := make([]*websocket.Conn, wsCount)
	var mu sync.Mutex
	var openErr error
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				var err error
				if i < sseCount {
					var resp *http.Response
					if resp, err = dialStream(ctx, client, g, "/device/stream", hog); err == nil {
						streams[i] = &sseStream{resp: resp, r: bufio.NewReader(resp.Body)}
						if resp.StatusCode != http.StatusOK {
							err = &streamError{"status " + resp.Status}
						}
					}
				} else {
					url := "ws" + strings.TrimPrefix(g.url, "http") + "/device/ws?device_key=" + hog
					sockets[i-sseCount], _, err = websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client})
				}
				if err != nil {
					mu.Lock()
					openErr = err
					mu.Unlock()
				}
			}
		})
	}
	for i := range sseCount + wsCount {
		work <- i
	}
	close(work)
	wg.Wait()
	defer func() {
		for _, s := range streams {
			if s != nil {
				_ = s.resp.Body.Close()
			}
		}
		for _, c := range sockets {
			if c != nil {
				_ = c.CloseNow()
			}
		}
	}()
	if openErr != nil {
		t.Fatalf("opening %d streams of one device: %v", sseCount+wsCount, openErr)
	}

	victimEvents, closeVictim := openSSE(t, g, victim, "")
	defer closeVictim()
	ev := g.mustOK(t, "/event/create", createBody(ch, nil))["event_id"].(string)

	if got := next(t, victimEvents); eventIDOf(got.data) != ev {
		t.Fatalf("the other device's stream got %+v, want event %s", got, ev)
	}
	for i, s := range streams {
		m, err := s.nextMessage()
		if err != nil {
			t.Fatalf("SSE stream %d of %d of one device: %v", i+1, sseCount, err)
		}
		if eventIDOf(m) != ev {
			t.Fatalf("SSE stream %d got %v", i+1, m)
		}
	}
	for i, c := range sockets {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("WebSocket %d of %d of one device: %v", i+1, wsCount, err)
		}
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil || f["type"] != "message" || eventIDOf(f) != ev {
			t.Fatalf("WebSocket %d got %s", i+1, data)
		}
	}
	if n := g.inboxConsumers(t); n != 0 {
		t.Fatalf("%d live streams hold %d JetStream consumers, want none", sseCount+wsCount+1, n)
	}
	// All streams of the device share one doorbell subscription; the victim has its own.
	if n := ingestNC.NumSubscriptions() - baseSubs; n != 2 {
		t.Fatalf("%d live streams of 2 devices hold %d NATS subscriptions, want 2", sseCount+wsCount+1, n)
	}

	// Closed, they leave nothing behind.
	for _, s := range streams {
		_ = s.resp.Body.Close()
	}
	for _, c := range sockets {
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
	closeVictim()
	eventually(t, 30*time.Second, "the streams' subscriptions to go", func() bool {
		return ingestNC.NumSubscriptions() == baseSubs
	})
	if n := g.inboxConsumers(t); n != 0 {
		t.Fatalf("%d JetStream consumers left after the streams closed", n)
	}
}

// TestStreamsPerDevice: the 9th live stream of one device is refused 429 too_many_streams with
// the envelope, SSE before streaming and WebSocket before upgrading; another device still
// streams; once one of the eight closes, a new one is admitted.
func TestStreamsPerDevice(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{streamsPerDevice: 8})
	key, other := g.device(t, "web"), g.device(t, "web")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	wsURL := func(k string) string { return "ws" + strings.TrimPrefix(g.url, "http") + "/device/ws?device_key=" + k }

	var sse []*sseStream
	for range 5 {
		sse = append(sse, openStream(ctx, t, client, g, key))
	}
	for range 3 {
		c, _, err := websocket.Dial(ctx, wsURL(key), &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.CloseNow() }()
	}
	defer func() {
		for _, s := range sse {
			_ = s.resp.Body.Close()
		}
	}()

	// The 9th: SSE gets the envelope (checked and recorded by the request helper, once it is
	// known not to be a stream that would never end) ...
	refused(t, ctx, client, g, key)
	r := g.request(t, http.MethodGet, "/device/stream?device_key="+key, "", nil, nil)
	if r.status != http.StatusTooManyRequests || r.code() != "too_many_streams" || !strings.Contains(*r.env.Error, "8 live streams") {
		t.Fatalf("9th SSE stream: %d %s", r.status, r.raw)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("9th SSE stream answered %s, want the JSON envelope", ct)
	}
	// ... and so does the WebSocket, without upgrading.
	c, resp, err := websocket.Dial(ctx, wsURL(key), &websocket.DialOptions{HTTPClient: client})
	if err == nil {
		_ = c.CloseNow()
		t.Fatal("9th stream, a WebSocket, was upgraded")
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("9th stream, a WebSocket: %v %v", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil || env.ErrorCode == nil || *env.ErrorCode != "too_many_streams" || env.Success {
		t.Fatalf("9th stream, a WebSocket, answered %s", body)
	}

	// Another device is not affected.
	otherStream := openStream(ctx, t, client, g, other)
	defer func() { _ = otherStream.resp.Body.Close() }()

	// One closes; its slot is free again once the gateway has seen it go.
	_ = sse[0].resp.Body.Close()
	sse = sse[1:]
	eventually(t, 10*time.Second, "a stream admitted after one closed", func() bool {
		resp, err := dialStream(ctx, client, g, "/device/stream", key)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			sse = append(sse, &sseStream{resp: resp, r: bufio.NewReader(resp.Body)})
			return true
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("stream: %d", resp.StatusCode)
		}
		return false
	})
	refused(t, ctx, client, g, key)
}

// refused checks that a stream of key is answered 429.
func refused(t *testing.T, ctx context.Context, client *http.Client, g *gateway, key string) {
	t.Helper()
	resp, err := dialStream(ctx, client, g, "/device/stream", key)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a 9th stream of one device: %d, want 429", resp.StatusCode)
	}
}

// TestStreamsPerDeviceAcrossIngestReplicas: the stream limit holds across ingest replicas on
// one broker (each announces its counts on NATS, as the ingest user of the permission table).
// A device holding its 2 streams on replica A is refused 429 too_many_streams on replica B
// once B has heard of them; after one closes on A, B admits one, and only one.
func TestStreamsPerDeviceAcrossIngestReplicas(t *testing.T) {
	t.Parallel()
	ns := bustest.RunSecured(t)
	violations := &bustest.Violations{}
	t.Cleanup(func() { // runs after the replicas stopped
		for _, v := range violations.All() {
			t.Errorf("ingest did what the permission table does not allow: %s", v)
		}
	})
	cfg := ingest.Config{RetryBudget: time.Second, StreamsPerDevice: 2}
	var replicas [2]*gateway
	for i := range replicas {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(ns.ClientURL(), bustest.RoleOptions(bus.RoleIngest, violations)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		runService(t, func(ctx context.Context) error {
			return ingest.Run(ctx, cfg, ingest.Deps{NC: nc, Logger: quiet, HTTPListener: ln})
		})
		replicas[i] = &gateway{url: "http://" + ln.Addr().String()}
	}
	runLifecycle(t, ns.ClientURL())
	a, b := replicas[0], replicas[1]
	a.waitReady(t)
	b.waitReady(t)
	key := a.device(t, "web")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	onA := []*sseStream{openStream(ctx, t, client, a, key), openStream(ctx, t, client, a, key)}
	defer func() {
		for _, s := range onA {
			_ = s.resp.Body.Close()
		}
	}()

	// tryB opens a stream on B: admitted (the stream, open) or refused with the envelope.
	tryB := func() *sseStream {
		t.Helper()
		resp, err := dialStream(ctx, client, b, "/device/stream", key)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			return &sseStream{resp: resp, r: bufio.NewReader(resp.Body)}
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var env envelope
		if resp.StatusCode != http.StatusTooManyRequests || json.Unmarshal(body, &env) != nil ||
			env.ErrorCode == nil || *env.ErrorCode != "too_many_streams" || !strings.Contains(*env.Error, "2 live streams") {
			t.Fatalf("stream on B: %d %s", resp.StatusCode, body)
		}
		seenCodes.Store("too_many_streams", true)
		return nil
	}
	// Until B has heard of A's streams it may admit one: closed at once, it frees its slot.
	eventually(t, 5*time.Second, "B refusing the device's third stream", func() bool {
		if s := tryB(); s != nil {
			_ = s.resp.Body.Close()
			return false
		}
		return true
	})

	_ = onA[0].resp.Body.Close()
	onA = onA[1:]
	var onB *sseStream
	eventually(t, 10*time.Second, "B admitting a stream once one closed on A", func() bool {
		onB = tryB()
		return onB != nil
	})
	defer func() { _ = onB.resp.Body.Close() }()
	// One on A, one on B: B has known its own at once, so the next is refused without a wait.
	if s := tryB(); s != nil {
		_ = s.resp.Body.Close()
		t.Fatal("B admitted a third stream: one on A, two on B")
	}
}
