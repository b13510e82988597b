package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// TestBrowsers: with --cors-origins a page on an allowed origin gets its preflight answered
// and may read the API's answers; other origins get no CORS headers. The stream routes take
// the token as ?auth=, since EventSource and WebSocket cannot send an Authorization header.
func TestBrowsers(t *testing.T) {
	t.Parallel()
	const app, evil = "https://app.example.com", "https://evil.example"
	g := startGateway(t, gatewayOpts{token: "tok", corsOrigins: app + ", http://localhost:3000"})
	auth := map[string]string{"Authorization": "Bearer tok"}

	// raw sends a request whose answer may be no envelope (a preflight's 204).
	raw := func(method, path string, header map[string]string) (int, http.Header) {
		req, err := http.NewRequestWithContext(t.Context(), method, g.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	// The preflight of a page's POST with the token: answered without the token.
	status, header := raw(http.MethodOptions, "/event/create", map[string]string{"Origin": app,
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"})
	pre := response{status: status, header: header}
	if pre.status != http.StatusNoContent || pre.header.Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight: %d %v", pre.status, pre.header)
	}
	if status, header := raw(http.MethodOptions, "/event/create", map[string]string{"Origin": evil,
		"Access-Control-Request-Method": "POST"}); header.Get("Access-Control-Allow-Origin") != "" || status == http.StatusNoContent {
		t.Fatalf("preflight of another origin: %d %v", status, header)
	}
	// The request itself: the answer (an error here) is readable by the page.
	r := g.request(t, http.MethodPost, "/channel/create", "application/json", []byte(`{"channel_name":"b","password":"secret-123"}`),
		map[string]string{"Origin": app, "Authorization": "Bearer tok"})
	if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Fatalf("request from the page: %d %v", r.status, r.header)
	}
	if r := g.request(t, http.MethodPost, "/channel/create", "application/json", []byte(`{}`), map[string]string{"Origin": evil, "Authorization": "Bearer tok"}); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("request of another origin got CORS headers: %v", r.header)
	}

	// ?auth= on the stream routes.
	key := g.request(t, http.MethodPost, "/device/register", "application/json", []byte(`{"platform":"web"}`), auth).data(t)["device_key"].(string)
	stream := func(query string) int {
		status, _ := raw(http.MethodGet, "/device/stream?device_key="+key+query, nil)
		return status
	}
	for query, want := range map[string]int{"": http.StatusUnauthorized, "&auth=wrong": http.StatusUnauthorized,
		"&auth=tok": http.StatusOK, "&auth=" + url.QueryEscape("Bearer tok"): http.StatusOK} {
		if got := stream(query); got != want {
			t.Errorf("SSE with %q: %d, want %d", query, got, want)
		}
	}
	ws := "ws" + strings.TrimPrefix(g.url, "http") + "/device/ws?device_key=" + key
	if _, resp, err := websocket.Dial(t.Context(), ws, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WebSocket without ?auth=: %v", err)
	}
	c, _, err := websocket.Dial(t.Context(), ws+"&auth=tok", nil)
	if err != nil {
		t.Fatalf("WebSocket with ?auth=: %v", err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	// Not on other routes: a token in a URL ends up in logs and histories.
	if r := g.request(t, http.MethodPost, "/device/register?auth=tok", "application/json", []byte(`{"platform":"web"}`), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("?auth= on a REST route: %d", r.status)
	}
}
