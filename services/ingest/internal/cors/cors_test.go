package cors

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		enabled bool
		wantErr bool
	}{
		{"", false, false},
		{"*", true, false},
		{"https://app.example.com, http://localhost:3000", true, false},
		{"https://app.example.com/", true, false},
		{"app.example.com", false, true},
		{"ftp://x", false, true},
		{"https://x/path", false, true},
		{"https://x?q=1", false, true},
	} {
		p, err := Parse(tc.in)
		if (err != nil) != tc.wantErr || (err == nil && p.Enabled() != tc.enabled) {
			t.Errorf("Parse(%q) = %v, %v", tc.in, p, err)
		}
	}
}

func TestApply(t *testing.T) {
	p, err := Parse("https://App.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, origin, reqMethod string
		done                            bool
		allow                           string
		status                          int
	}{
		{"preflight of an allowed origin", http.MethodOptions, "https://app.example.com", "POST", true, "https://app.example.com", http.StatusNoContent},
		{"request of an allowed origin", http.MethodPost, "https://app.example.com", "", false, "https://app.example.com", 0},
		{"origin case does not matter", http.MethodPost, "https://APP.example.com", "", false, "https://APP.example.com", 0},
		{"preflight of another origin", http.MethodOptions, "https://evil.example", "POST", false, "", 0},
		{"request of another origin", http.MethodPost, "https://evil.example", "", false, "", 0},
		{"no origin", http.MethodPost, "", "", false, "", 0},
		{"OPTIONS that is no preflight", http.MethodOptions, "https://app.example.com", "", false, "https://app.example.com", 0},
	} {
		r := httptest.NewRequest(tc.method, "/event/create", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.reqMethod != "" {
			r.Header.Set("Access-Control-Request-Method", tc.reqMethod)
		}
		w := httptest.NewRecorder()
		done := p.Apply(w, r)
		if done != tc.done || w.Header().Get("Access-Control-Allow-Origin") != tc.allow || w.Header().Get("Vary") != "Origin" {
			t.Errorf("%s: done %v, headers %v", tc.name, done, w.Header())
		}
		if tc.done && (w.Code != tc.status || w.Header().Get("Access-Control-Allow-Headers") == "") {
			t.Errorf("%s: preflight answered %d %v", tc.name, w.Code, w.Header())
		}
		if !tc.done && tc.allow != "" && w.Header().Get("Access-Control-Expose-Headers") == "" {
			t.Errorf("%s: X-Request-Id not exposed", tc.name)
		}
	}
	var none *Policy
	if none.Apply(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil)) {
		t.Error("a nil policy answered")
	}
}
