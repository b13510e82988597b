package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/auth"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
	"pushgo.dev/gateway/services/ingest/internal/grpcapi"
	"pushgo.dev/gateway/services/ingest/internal/httpapi"
)

// addrEvents answers Create with a success and records the client address its context holds.
type addrEvents struct {
	apiv1.UnimplementedEventServiceServer
	seen chan clientaddr.Addr
}

func (f *addrEvents) Create(ctx context.Context, _ *apiv1.EventRequest) (*apiv1.EventOpResult, error) {
	a, _ := clientaddr.FromContext(ctx) // none: the zero Addr, "unknown", which no row wants
	f.seen <- a
	return &apiv1.EventOpResult{}, nil
}

// TestClientAddressReachesHandlers checks that the address the HTTP handler resolves survives
// the REST gateway and the in-process connection, and is not replaced by the interceptor.
func TestClientAddressReachesHandlers(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	trusted, err := clientaddr.ParsePrefixes("127.0.0.1/32")
	if err != nil {
		t.Fatal(err)
	}
	exempt, _ := clientaddr.ParsePrefixes("198.51.100.0/24")
	inline := grpcapi.NewInline(grpcapi.Interceptor(auth.NewToken(""), nil, log))
	ev := &addrEvents{seen: make(chan clientaddr.Addr, 1)}
	apiv1.RegisterEventServiceServer(inline, ev)
	h, err := httpapi.New(t.Context(), inline, httpapi.Options{Logger: log, Addrs: clientaddr.New(trusted, exempt)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tests := []struct {
		xff        string
		want       string
		wantExempt bool
	}{
		{"", "127.0.0.1", false},
		{"203.0.113.9", "203.0.113.9", false},
		{"1.1.1.1, 198.51.100.7", "198.51.100.7", true},
		{"2001:db8:5:6::1", "2001:db8:5:6::/64", false},
	}
	for _, tt := range tests {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/event/create", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if tt.xff != "" {
			req.Header.Set("X-Forwarded-For", tt.xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("XFF %q: status %d", tt.xff, resp.StatusCode)
		}
		if got := <-ev.seen; got.Key() != tt.want || got.Exempt != tt.wantExempt {
			t.Fatalf("XFF %q: the handler saw %s (exempt %v), want %s (%v)", tt.xff, got.Key(), got.Exempt, tt.want, tt.wantExempt)
		}
	}
}
