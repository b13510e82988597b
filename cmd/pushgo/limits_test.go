package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"sync"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/services/dispatch"
	"pushgo.dev/gateway/services/ingest"
)

// retryAfter returns a response's Retry-After in seconds, failing the test unless it is a
// whole number of at least 1.
func retryAfter(t testing.TB, r response) int {
	t.Helper()
	s, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || s < 1 {
		t.Fatalf("Retry-After %q on %d %s", r.header.Get("Retry-After"), r.status, r.raw)
	}
	return s
}

// TestChannelOverItsRateLimit: a channel sending ops faster than --channel-ops-per-second gets
// 429 rate_limited with Retry-After, while another channel's ops go through at once; the
// refused op leaves no op record, so its op_id works when retried later.
func TestChannelOverItsRateLimit(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{channelOpsPerSecond: 1}) // burst 2
	flooded, calm := g.channel(t), g.channel(t)

	var refused response
	var refusedOp string
	for i := 0; i < 50 && refused.status == 0; i++ {
		op := fmt.Sprint("flood-", i)
		r := g.post(t, "/event/create", createBody(flooded, obj{"op_id": op}))
		switch {
		case r.status == http.StatusTooManyRequests && r.code() == "rate_limited":
			refused, refusedOp = r, op
		case r.status != http.StatusOK:
			t.Fatalf("op %d: %d %s", i, r.status, r.raw)
		}
	}
	if refused.status == 0 {
		t.Fatal("50 ops in a row on a channel limited to 1 op/s (burst 2) were all accepted")
	}
	if s := retryAfter(t, refused); s > 2 {
		t.Fatalf("Retry-After %d s; one token comes back within 1 s", s)
	}

	// The other channel is unaffected: its burst is there at once.
	for i := range 2 {
		g.mustOK(t, "/event/create", createBody(calm, obj{"op_id": fmt.Sprint("calm-", i)}))
	}

	// The refused op was never recorded: once the bucket refills, the same op_id creates its event.
	var again response
	eventually(t, 10*time.Second, "the refused op to go through on retry", func() bool {
		again = g.post(t, "/event/create", createBody(flooded, obj{"op_id": refusedOp}))
		if again.status == http.StatusTooManyRequests {
			retryAfter(t, again)
			return false
		}
		return true
	})
	if d := again.data(t); again.status != http.StatusOK || d["applied"] != true || d["version"] != 1.0 {
		t.Fatalf("retry of the refused op: %d %s", again.status, again.raw)
	}
}

// TestRetryAfterIgnored: a client that comes straight back on its connection after a 429 is
// held there until its Retry-After is over (--retry-hold), then served, while another
// connection is not held.
func TestRetryAfterIgnored(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{channelOpsPerSecond: 1, retryHold: 2 * time.Second}) // burst 2
	flooded, calm := g.channel(t), g.channel(t)
	// The flooding client has a transport of its own with one connection at most: the shared
	// http.DefaultClient pool serves every parallel test and may close an idle connection of
	// this one's, and a new connection is (rightly) not held.
	conns := 0
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			conns++
		}
	}}
	flooder := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	t.Cleanup(flooder.CloseIdleConnections)
	post := func(body obj) response {
		t.Helper()
		ctx := httptrace.WithClientTrace(t.Context(), trace)
		return g.requestVia(ctx, t, flooder, http.MethodPost, "/event/create", "application/json", mustJSON(t, body), nil)
	}
	refused := false
	var refusedAt time.Time
	for i := 0; i < 50 && !refused; i++ {
		r := post(createBody(flooded, obj{"op_id": fmt.Sprint("flood-", i)}))
		switch {
		case r.status == http.StatusTooManyRequests && r.code() == "rate_limited":
			refusedAt = time.Now()
			if s := retryAfter(t, r); s != 1 {
				t.Fatalf("Retry-After %d, want 1", s)
			}
			refused = true
		case r.status != http.StatusOK:
			t.Fatalf("op %d: %d %s", i, r.status, r.raw)
		}
	}
	if !refused {
		t.Fatal("50 ops in a row on a channel limited to 1 op/s were all accepted")
	}

	// Another connection, straight after: served, and not held (the hold would take ~1 s).
	other := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(other.CloseIdleConnections)
	body := mustJSON(t, createBody(calm, obj{"op_id": "calm"}))
	resp, err := other.Post(g.url+"/event/create", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another connection's op: %d", resp.StatusCode)
	}

	// The refused connection comes straight back: held to the end of the Retry-After (1 s
	// from the refusal, however long the other connection's op took on a busy machine), and
	// then handled, by which time the bucket has the token it was waiting for.
	r := post(createBody(flooded, obj{"op_id": "after-the-hold"}))
	if conns != 1 {
		t.Fatalf("the flooding client used %d connections, want 1", conns)
	}
	if since := time.Since(refusedAt); since < 800*time.Millisecond {
		t.Fatalf("answered %d %v after the refusal: not held to its Retry-After", r.status, since)
	}
	if r.status != http.StatusOK {
		t.Fatalf("the op after the hold: %d %s", r.status, r.raw)
	}
}

// TestSubscribersPerChannelQuota: beyond --subscribers-per-channel a new device is refused 403
// quota_exceeded; a subscribed device may subscribe again, and other channels are unaffected.
func TestSubscribersPerChannelQuota(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{subscribersPerChannel: 2})
	ch, other := g.channel(t), g.channel(t)
	d1, d2, d3 := g.device(t, ""), g.device(t, ""), g.device(t, "")
	g.subscribe(t, d1, ch)
	g.subscribe(t, d2, ch)

	r := g.post(t, "/channel/subscribe", obj{"device_key": d3, "channel_id": ch, "password": "secret-123"})
	if r.status != http.StatusForbidden || r.code() != "quota_exceeded" {
		t.Fatalf("third subscriber of a channel with quota 2: %d %s", r.status, r.raw)
	}
	g.subscribe(t, d1, ch) // already subscribed: not refused
	g.subscribe(t, d3, other)

	// The refused device receives nothing from the channel; the two subscribers do.
	d := g.mustOK(t, "/event/create", createBody(ch, nil))
	if del := d["delivery"].(map[string]any); del["targets"] != 2.0 || del["delivered"] != 2.0 {
		t.Fatalf("delivery = %v, want 2 targets", del)
	}
	if items := g.pull(t, d3); len(items) != 0 {
		t.Fatalf("the refused device got %d items", len(items))
	}
}

// TestRateLimitAcrossIngestReplicas: two ingest instances on one broker, each offered far more
// than a channel's limit, together admit what one bucket would over the window (rate·window +
// burst) within ±20 %. Per-process limiters would admit twice that.
func TestRateLimitAcrossIngestReplicas(t *testing.T) {
	t.Parallel()
	const rate, burst = 10.0, 20.0
	const window = 3 * time.Second
	ns := bustest.RunServer(t)
	url := ns.ClientURL()
	cfg := ingest.Config{RetryBudget: time.Second, ChannelOpsPerSecond: rate}
	replicas := []*gateway{runIngest(t, url, cfg, nil), runIngest(t, url, cfg, nil)}
	runLifecycle(t, url)
	runDispatch(t, url, dispatch.Config{}, nil)
	for _, g := range replicas {
		g.waitReady(t)
	}
	ch := replicas[0].channel(t)
	// The password is verified once per instance (argon2) before the clock starts.
	for _, g := range replicas {
		g.mustOK(t, "/event/list", obj{"channel_id": ch, "password": "secret-123"})
	}

	var mu sync.Mutex
	var admitted, refused int
	var last time.Time
	var wg sync.WaitGroup
	start := time.Now()
	for c := range 6 { // three clients per replica, each at most one request per 10 ms
		g := replicas[c%2]
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			ok, no := 0, 0
			var at time.Time
			for now := time.Now(); now.Sub(start) < window; now = time.Now() {
				at = now
				r := g.post(t, "/event/create", createBody(ch, nil))
				switch {
				case r.status == http.StatusOK:
					ok++
				case r.status == http.StatusTooManyRequests && r.code() == "rate_limited":
					retryAfter(t, r)
					no++
				default:
					t.Errorf("%d %s", r.status, r.raw)
					return
				}
				select {
				case <-tick.C:
				case <-t.Context().Done():
					return
				}
			}
			mu.Lock()
			defer mu.Unlock()
			admitted, refused = admitted+ok, refused+no
			if at.After(last) {
				last = at
			}
		})
	}
	wg.Wait()
	want := rate*last.Sub(start).Seconds() + burst
	t.Logf("two ingest replicas admitted %d and refused %d; one bucket admits %.0f", admitted, refused, want)
	if refused == 0 {
		t.Fatal("nothing was refused: the load did not exceed the limit")
	}
	if f := float64(admitted); f < 0.8*want || f > 1.2*want {
		t.Fatalf("two replicas admitted %d ops; one bucket over the window admits %.0f (±20 %%)", admitted, want)
	}
}

// hangingHook is a webhook receiver that holds every request until released; it counts the
// distinct ops it was sent (a webhook retried within the budget counts once). Requests made
// with go are waited for when the test ends, after the release, before the receiver closes.
type hangingHook struct {
	url     string
	release func()
	ops     sync.WaitGroup

	mu      sync.Mutex
	arrived map[string]bool
}

func newHangingHook(t *testing.T) *hangingHook {
	h := &hangingHook{arrived: map[string]bool{}}
	released := make(chan struct{})
	var once sync.Once
	h.release = func() { once.Do(func() { close(released) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var push struct {
			Data struct {
				OpID string `json:"op_id"`
			} `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&push); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		h.mu.Lock()
		h.arrived[push.Data.OpID] = true
		h.mu.Unlock()
		select {
		case <-released:
		case <-r.Context().Done():
		}
	}))
	h.url = srv.URL + "/hook"
	t.Cleanup(srv.Close)
	return h
}

// goRequest runs f (a request of the test) so that finish waits for it.
func (h *hangingHook) goRequest(f func()) { h.ops.Go(f) }

// finish releases the held requests and waits for the test's requests; defer it.
func (h *hangingHook) finish() {
	h.release()
	h.ops.Wait()
}

// opsSeen returns how many distinct ops reached the receiver.
func (h *hangingHook) opsSeen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.arrived)
}

// slowAndQuick makes two channels: one whose only subscriber is a webhook to h, one with a
// device on the private route.
func (g *gateway) slowAndQuick(t *testing.T, h *hangingHook) (slow, quick string) {
	slow, quick = g.channel(t), g.channel(t)
	key := g.device(t, "server")
	g.mustOK(t, "/channel/device", obj{"device_key": key, "channel_type": "webhook", "provider_token": h.url})
	g.subscribe(t, key, slow)
	g.subscribe(t, g.device(t, ""), quick)
	return slow, quick
}

// TestChannelOpsTakeTurnsWithoutStalling: with one op of a channel at a time
// (--channel-concurrency 1), a channel whose op waits on a webhook that does not answer still
// gets its next op into the pipeline once the first outlives its lease, and another channel's
// op is answered at once meanwhile.
func TestChannelOpsTakeTurnsWithoutStalling(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{allowPrivate: true, channelConcurrency: 1, dispatchWait: 10 * time.Second})
	h := newHangingHook(t)
	defer h.finish() // before the receiver closes and the test's context ends
	slow, quick := g.slowAndQuick(t, h)

	answers := make(chan response, 2)
	for i := range 2 {
		h.goRequest(func() { answers <- g.post(t, "/event/create", createBody(slow, obj{"op_id": fmt.Sprint("slow-", i)})) })
	}
	eventually(t, 5*time.Second, "both ops of the slow channel to reach its webhook", func() bool { return h.opsSeen() == 2 })
	d := g.mustOK(t, "/event/create", createBody(quick, nil))
	if del := d["delivery"].(map[string]any); del["delivered"] != 1.0 {
		t.Fatalf("the other channel's op: delivery %v", del)
	}
	select {
	case r := <-answers:
		t.Fatalf("an op of the slow channel was answered while its webhook hung: %d %s", r.status, r.raw)
	default:
	}
	h.release()
	for range 2 {
		if r := <-answers; r.status != http.StatusOK {
			t.Fatalf("an op of the slow channel once its webhook answered: %d %s", r.status, r.raw)
		}
	}
}

// TestSlowWebhookDoesNotStallOtherChannels: a channel whose webhook never answers, sent far
// more ops than dispatch has workers, holds at most its share of them; another channel's op
// is still delivered and answered 200 within --dispatch-wait.
func TestSlowWebhookDoesNotStallOtherChannels(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{allowPrivate: true, dispatchWait: 3 * time.Second, channelConcurrency: -1})
	h := newHangingHook(t)
	defer h.finish()
	slow, quick := g.slowAndQuick(t, h)

	// Twice dispatch's workers: with every op of the slow channel holding a worker for the
	// whole delivery budget, each worker has about two of them queued.
	const flood = 2 * dispatch.DefaultWorkers
	for i := range flood {
		h.goRequest(func() {
			r := g.post(t, "/event/create", createBody(slow, obj{"op_id": fmt.Sprint("slow-", i)}))
			if r.status != http.StatusOK && r.code() != "dispatch_timeout" && r.code() != "dispatch_partial_failure" {
				t.Errorf("an op of the slow channel: %d %s", r.status, r.raw)
			}
		})
	}
	eventually(t, 10*time.Second, "the slow channel's ops to reach its webhook", func() bool { return h.opsSeen() >= 8 })
	r := g.post(t, "/event/create", createBody(quick, nil))
	if r.status != http.StatusOK {
		t.Fatalf("the other channel's op beside the slow webhook: %d %s", r.status, r.raw)
	}
}
