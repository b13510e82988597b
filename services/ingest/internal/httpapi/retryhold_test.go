package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/auth"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
	"pushgo.dev/gateway/services/ingest/internal/grpcapi"
	"pushgo.dev/gateway/services/ingest/internal/httpapi"
	"pushgo.dev/gateway/services/ingest/internal/retryhold"
)

// limitedEvents refuses every create on channel "busy" with 429 rate_limited, Retry-After 1,
// and accepts the rest.
type limitedEvents struct {
	apiv1.UnimplementedEventServiceServer
}

func (limitedEvents) Create(_ context.Context, req *apiv1.EventRequest) (*apiv1.EventOpResult, error) {
	if req.GetChannelId() == "busy" {
		e := apierr.New("rate_limited", "slow down")
		e.RetryAfter = 1
		return nil, e
	}
	return &apiv1.EventOpResult{}, nil
}

// heldTimer is a hold timer the test releases: each hold announces itself on held.
type heldTimer struct {
	held    chan time.Duration
	release chan time.Time
}

func (h *heldTimer) after(d time.Duration) <-chan time.Time {
	h.held <- d
	return h.release
}

// startHeld runs the handler with a holder on h's timer, behind an http.Server that gives
// every connection its hold state; trusted are the proxies of the resolver.
func startHeld(t *testing.T, h *heldTimer, trusted string) *httptest.Server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	inline := grpcapi.NewInline(grpcapi.Interceptor(auth.NewToken(""), nil, log))
	apiv1.RegisterEventServiceServer(inline, limitedEvents{})
	prefixes, err := clientaddr.ParsePrefixes(trusted)
	if err != nil {
		t.Fatal(err)
	}
	hold := retryhold.NewForTest(time.Second, time.Now, h.after)
	handler, err := httpapi.New(t.Context(), inline, httpapi.Options{Logger: log, Addrs: clientaddr.New(prefixes, nil), Hold: hold})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnContext = retryhold.ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// oneConn is a client that keeps one keep-alive connection.
func oneConn(t *testing.T) *http.Client {
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func postCreate(t *testing.T, c *http.Client, url, channel string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/event/create",
		strings.NewReader(`{"channel_id":"`+channel+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestRetryHold: after a 429 with Retry-After, the next request on that connection is held
// before it is handled, while another connection is served meanwhile; a request arriving
// through a trusted proxy is never held.
func TestRetryHold(t *testing.T) {
	t.Parallel()
	timer := &heldTimer{held: make(chan time.Duration, 1), release: make(chan time.Time)}
	srv := startHeld(t, timer, "")
	a, b := oneConn(t), oneConn(t)
	if got := postCreate(t, a, srv.URL, "busy"); got != http.StatusTooManyRequests {
		t.Fatalf("first create on busy: %d, want 429", got)
	}
	done := make(chan int, 1)
	go func() { done <- postCreate(t, a, srv.URL, "calm") }()
	select {
	case d := <-timer.held:
		if d <= 0 || d > time.Second {
			t.Fatalf("held for %v, want (0, 1s]", d)
		}
	case got := <-done:
		t.Fatalf("the request after the 429 was answered %d without being held", got)
	}
	// Connection a is held; b is served meanwhile, refused or not, and never held.
	if got := postCreate(t, b, srv.URL, "calm"); got != http.StatusOK {
		t.Fatalf("another connection: %d, want 200", got)
	}
	if got := postCreate(t, b, srv.URL, "busy"); got != http.StatusTooManyRequests {
		t.Fatalf("another connection on busy: %d, want 429", got)
	}
	select {
	case got := <-done:
		t.Fatalf("the held request was answered (%d) before its hold ended", got)
	default:
	}
	close(timer.release)
	if got := <-done; got != http.StatusOK {
		t.Fatalf("the held request, once released: %d, want 200 (held, never refused for it)", got)
	}
	// b was told to wait by its second request; its next one is held too.
	go func() { done <- postCreate(t, b, srv.URL, "calm") }()
	<-timer.held
	if got := <-done; got != http.StatusOK {
		t.Fatalf("b after its hold: %d", got)
	}
}

func TestRetryHoldNotThroughProxy(t *testing.T) {
	t.Parallel()
	timer := &heldTimer{held: make(chan time.Duration, 1), release: make(chan time.Time)}
	close(timer.release)
	srv := startHeld(t, timer, "127.0.0.1/32") // the test's client is a trusted proxy
	c := oneConn(t)
	for i := range 3 {
		if got := postCreate(t, c, srv.URL, "busy"); got != http.StatusTooManyRequests {
			t.Fatalf("create %d: %d, want 429", i, got)
		}
	}
	select {
	case d := <-timer.held:
		t.Fatalf("a proxy's connection was held %v", d)
	default:
	}
}
