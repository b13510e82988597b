// Package cors lets browser pages on the origins an operator names (--cors-origins) call the
// API (DESIGN.md §11): the Access-Control-* answers to a preflight and to each request. An
// origin not on the list gets no CORS headers, so the browser keeps the answer from the page;
// nothing else changes for it (the API does not rely on CORS for authorisation: every route
// but health takes a token or a device key, never a cookie).
package cors

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Headers a page may send and read.
const (
	allowMethods  = "GET, POST, OPTIONS"
	allowHeaders  = "Authorization, Content-Type, Last-Event-ID"
	exposeHeaders = "X-Request-Id, Retry-After"
	// maxAge is how long a browser may keep a preflight's answer (seconds).
	maxAge = "600"
)

// Policy is the list of origins allowed; the zero Policy (and nil) allows none.
type Policy struct {
	any     bool
	origins []string
}

// Parse reads a comma-separated list of origins (scheme://host[:port], as a browser sends
// them), or "*" for any origin; "" allows none.
func Parse(list string) (*Policy, error) {
	p := &Policy{}
	for o := range strings.SplitSeq(list, ",") {
		o = strings.TrimSpace(o)
		switch o {
		case "":
		case "*":
			p.any = true
		default:
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
				return nil, fmt.Errorf("cors origin %q is not scheme://host[:port]", o)
			}
			p.origins = append(p.origins, u.Scheme+"://"+strings.ToLower(u.Host))
		}
	}
	return p, nil
}

// Enabled reports whether any origin is allowed.
func (p *Policy) Enabled() bool { return p != nil && (p.any || len(p.origins) > 0) }

func (p *Policy) allows(origin string) bool {
	return origin != "" && (p.any || slices.Contains(p.origins, strings.ToLower(origin)))
}

// Apply adds the CORS headers r's origin is entitled to, and answers a preflight (OPTIONS with
// Access-Control-Request-Method) from an allowed origin itself: done reports that w has its
// answer. A preflight from another origin is left to the API (which refuses OPTIONS).
func (p *Policy) Apply(w http.ResponseWriter, r *http.Request) (done bool) {
	if !p.Enabled() {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if !p.allows(origin) {
		return false
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", allowMethods)
		h.Set("Access-Control-Allow-Headers", allowHeaders)
		h.Set("Access-Control-Max-Age", maxAge)
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	h.Set("Access-Control-Expose-Headers", exposeHeaders)
	return false
}
