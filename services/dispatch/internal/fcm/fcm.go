// Package fcm sends data messages through Firebase Cloud Messaging's HTTP v1 API (DESIGN.md
// §10.2). It authenticates as a service account: an RS256-signed JWT assertion exchanged at
// the credentials' token_uri for an OAuth2 access token (the JWT-bearer grant Google's
// libraries use), kept until a minute before it expires and replaced when FCM answers 401.
// It is written on net/http: the Admin SDK (firebase.google.com/go) pulls in Firestore,
// Storage and more, and golang.org/x/oauth2 would add a dependency for one POST.
//
// Client.Send makes one attempt and classifies FCM's answer (Result); retrying with back-off
// within an op's budget is the caller's (package push).
package fcm

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Host is FCM's production base URL.
const Host = "https://fcm.googleapis.com"

// Config configures a Client.
type Config struct {
	// Credentials is the service account (ParseCredentials).
	Credentials *Credentials
	// URL is FCM's base URL: Host, or a test server.
	URL string
	// TLS configures the connections to FCM and to the token URI; nil trusts the system pool.
	TLS *tls.Config
	// Timeout bounds one request.
	Timeout time.Duration
}

// Message is one data message to one device.
type Message struct {
	Token string
	Data  map[string]string
	// Title and Body, when set, add a notification block (shown by the system when the app is
	// in the background).
	Title, Body string
	// High sends with android.priority high (wakes the device); otherwise normal.
	High bool
	// CollapseKey makes a newer message replace an undelivered older one with the same key.
	CollapseKey string
}

// Result is FCM's answer to one attempt.
type Result struct {
	// Status is the HTTP status, 0 when no answer came.
	Status int
	// Reason is FCM's error code (UNREGISTERED, INVALID_ARGUMENT, QUOTA_EXCEEDED, …) or, without
	// an answer, "fcm_timeout", "fcm_unreachable" or "fcm_token_failed".
	Reason string
	// RetryAfter is the wait FCM asked for, if any.
	RetryAfter time.Duration
	// tokenProblem: FCM's INVALID_ARGUMENT is about the registration token, not the message.
	tokenProblem bool
}

// Wait is the wait the provider asked for before another attempt (0: none).
func (r Result) Wait() time.Duration { return r.RetryAfter }

// Why is the provider's reason (Reason).
func (r Result) Why() string { return r.Reason }

// OK reports a message FCM accepted.
func (r Result) OK() bool { return r.Status == http.StatusOK }

// Retryable reports an attempt worth repeating: no answer, an expired access token (401),
// 429 QUOTA_EXCEEDED, 500 INTERNAL, 503 UNAVAILABLE.
func (r Result) Retryable() bool {
	return r.Status == 0 && r.Reason != "fcm_token_failed" || r.Status == http.StatusUnauthorized ||
		r.Status == http.StatusTooManyRequests || r.Status >= 500
}

// Invalid reports a registration token FCM will never take again: UNREGISTERED (the app was
// removed or the token expired), or INVALID_ARGUMENT about the token itself (not a token).
func (r Result) Invalid() bool {
	return r.Reason == "UNREGISTERED" || r.Reason == "INVALID_ARGUMENT" && r.tokenProblem
}

// Client sends messages. It is safe for concurrent use.
type Client struct {
	send   string // the messages:send URL
	http   *http.Client
	tokens *tokens
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Credentials == nil {
		return nil, errors.New("fcm: no service account credentials (--fcm-credentials-file)")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("fcm: URL %q is not an https URL", cfg.URL)
	}
	t := &http.Transport{TLSClientConfig: cfg.TLS, MaxIdleConnsPerHost: 16, IdleConnTimeout: 5 * time.Minute,
		TLSHandshakeTimeout: cfg.Timeout, ForceAttemptHTTP2: true}
	hc := &http.Client{Transport: t, Timeout: cfg.Timeout}
	return &Client{
		send:   strings.TrimSuffix(cfg.URL, "/") + "/v1/projects/" + url.PathEscape(cfg.Credentials.ProjectID) + "/messages:send",
		http:   hc,
		tokens: &tokens{creds: cfg.Credentials, http: hc, now: time.Now},
	}, nil
}

// Send makes one attempt to deliver m.
func (c *Client) Send(ctx context.Context, m Message) Result {
	access, err := c.tokens.get(ctx)
	if err != nil {
		return Result{Reason: "fcm_token_failed"}
	}
	type notification struct {
		Title string `json:"title,omitempty"`
		Body  string `json:"body,omitempty"`
	}
	type android struct {
		Priority    string `json:"priority"`
		CollapseKey string `json:"collapse_key,omitempty"`
	}
	msg := struct {
		Token        string            `json:"token"`
		Data         map[string]string `json:"data,omitempty"`
		Notification *notification     `json:"notification,omitempty"`
		Android      android           `json:"android"`
	}{Token: m.Token, Data: m.Data, Android: android{Priority: "normal", CollapseKey: m.CollapseKey}}
	if m.High {
		msg.Android.Priority = "high"
	}
	if m.Title != "" || m.Body != "" {
		msg.Notification = &notification{m.Title, m.Body}
	}
	body, err := json.Marshal(map[string]any{"message": msg})
	if err != nil {
		return Result{Reason: "fcm_bad_request"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.send, bytes.NewReader(body))
	if err != nil {
		return Result{Reason: "fcm_bad_request"}
	}
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return Result{Reason: transportReason(err)}
	}
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	r := Result{Status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		return r
	}
	r.Reason, r.tokenProblem = errorCode(raw, resp.StatusCode)
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		r.RetryAfter = time.Duration(secs) * time.Second
	}
	if resp.StatusCode == http.StatusUnauthorized {
		c.tokens.expired(access)
	}
	return r
}

// errorCode reads FCM's error: the FcmError detail's errorCode, else the status ("NOT_FOUND"),
// else the HTTP status. tokenProblem says an INVALID_ARGUMENT names the token.
func errorCode(body []byte, status int) (code string, tokenProblem bool) {
	var e struct {
		Error struct {
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				Type            string `json:"@type"`
				ErrorCode       string `json:"errorCode"`
				FieldViolations []struct {
					Field string `json:"field"`
				} `json:"fieldViolations"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "fcm_status_" + strconv.Itoa(status), false
	}
	code = e.Error.Status
	for _, d := range e.Error.Details {
		if strings.HasSuffix(d.Type, "google.firebase.fcm.v1.FcmError") && d.ErrorCode != "" {
			code = d.ErrorCode
		}
		for _, v := range d.FieldViolations {
			tokenProblem = tokenProblem || v.Field == "message.token"
		}
	}
	if code == "" {
		return "fcm_status_" + strconv.Itoa(status), false
	}
	tokenProblem = tokenProblem || strings.Contains(e.Error.Message, "registration token")
	return code, tokenProblem
}

func transportReason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "fcm_timeout"
	}
	var netErr interface{ Timeout() bool }
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "fcm_timeout"
	}
	return "fcm_unreachable"
}
