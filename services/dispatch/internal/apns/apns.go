// Package apns sends notifications to the Apple Push Notification service (DESIGN.md §10.1):
// token-based authentication (an ES256 JWT from the team's .p8 key, kept 50 minutes and
// replaced when Apple calls it expired) over HTTP/2, one connection multiplexing every
// request. It is written on net/http rather than on a client library: the one maintained Go
// library (sideshow/apns2) has had no release since 2024 and no push-to-start, and what
// APNs needs is a POST with five headers.
//
// Client.Send makes one attempt and classifies Apple's answer (Result); retrying with back-off
// within an op's budget is the caller's (package push), as for webhooks.
package apns

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Apple's hosts.
const (
	HostProduction = "https://api.push.apple.com"
	HostSandbox    = "https://api.sandbox.push.apple.com"
)

// MaxPayload is the largest payload APNs takes, in bytes (alerts and Live Activities alike).
const MaxPayload = 4096

// Push types (apns-push-type).
const (
	PushTypeAlert        = "alert"
	PushTypeLiveActivity = "liveactivity"
)

// Config configures a Client.
type Config struct {
	// Key, KeyID and TeamID make the provider token: the .p8 key (ParseKey), its 10-character
	// key id, and the team id.
	Key    *ecdsa.PrivateKey
	KeyID  string
	TeamID string
	// Topic is the app's bundle id (apns-topic of alerts; Live Activities use
	// Topic + ".push-type.liveactivity").
	Topic string
	// URL is APNs' base URL: HostProduction, HostSandbox, or a test server.
	URL string
	// TLS configures the connection; nil trusts the system pool (SSL_CERT_FILE works).
	TLS *tls.Config
	// Timeout bounds one request.
	Timeout time.Duration
}

// Validate reports what is missing.
func (c Config) Validate() error {
	switch {
	case c.Key == nil:
		return errors.New("apns: no key (--apns-key-file)")
	case c.KeyID == "":
		return errors.New("apns: no key id (--apns-key-id)")
	case c.TeamID == "":
		return errors.New("apns: no team id (--apns-team-id)")
	case c.Topic == "":
		return errors.New("apns: no topic, the app's bundle id (--apns-topic)")
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("apns: URL %q is not an https URL", c.URL)
	}
	return nil
}

// Notification is one push to one device.
type Notification struct {
	// Token is the device token, hex, as the app got it from the system.
	Token string
	// PushType is PushTypeAlert or PushTypeLiveActivity.
	PushType string
	// Priority is 10 (deliver now) or 5 (power-friendly); 0 leaves the header out (10).
	Priority int
	// CollapseID, when set, makes this notification replace a shown one with the same id
	// (≤ 64 bytes).
	CollapseID string
	// Payload is the JSON {"aps": …} body, at most MaxPayload bytes.
	Payload []byte
}

// Result is Apple's answer to one attempt.
type Result struct {
	// Status is the HTTP status, 0 when no answer came (Reason says why).
	Status int
	// Reason is Apple's reason ("BadDeviceToken", "Unregistered", …) or, without an answer,
	// "apns_timeout" or "apns_unreachable".
	Reason string
	// RetryAfter is the wait Apple asked for (Retry-After), if any.
	RetryAfter time.Duration
}

// Wait is the wait the provider asked for before another attempt (0: none).
func (r Result) Wait() time.Duration { return r.RetryAfter }

// Why is the provider's reason (Reason).
func (r Result) Why() string { return r.Reason }

// OK reports a notification Apple accepted.
func (r Result) OK() bool { return r.Status == http.StatusOK }

// Retryable reports an attempt worth repeating: no answer, 429, a 5xx, or an expired token
// (the next attempt carries a new one).
func (r Result) Retryable() bool {
	return r.Status == 0 || r.Status == http.StatusTooManyRequests || r.Status >= 500 ||
		r.Reason == "ExpiredProviderToken"
}

// Invalid reports a device token that will never work again: unregistered (the app was
// removed, 410) or not a token of this app and environment. The route is dead until the
// device registers a new token.
func (r Result) Invalid() bool {
	return r.Status == http.StatusGone || r.Reason == "Unregistered" || r.Reason == "BadDeviceToken" ||
		r.Reason == "DeviceTokenNotForTopic"
}

// Client sends notifications. It is safe for concurrent use.
type Client struct {
	cfg    Config
	http   *http.Client
	tokens *tokens
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &http.Transport{
		TLSClientConfig:     cfg.TLS,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     10 * time.Minute, // Apple keeps connections open for hours
		TLSHandshakeTimeout: cfg.Timeout,
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP2(true) // APNs speaks HTTP/2 only
	return &Client{
		cfg:    cfg,
		http:   &http.Client{Transport: t, Timeout: cfg.Timeout},
		tokens: &tokens{key: cfg.Key, keyID: cfg.KeyID, teamID: cfg.TeamID, now: time.Now},
	}, nil
}

// Topic returns the apns-topic of a push type.
func (c *Client) Topic(pushType string) string {
	if pushType == PushTypeLiveActivity {
		return c.cfg.Topic + ".push-type.liveactivity"
	}
	return c.cfg.Topic
}

// Send makes one attempt to deliver n. When Apple calls the provider token expired, the next
// attempt carries a new one.
func (c *Client) Send(ctx context.Context, n Notification) Result {
	token, err := c.tokens.get()
	if err != nil {
		return Result{Reason: "apns_token_failed"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL+"/3/device/"+url.PathEscape(n.Token), bytes.NewReader(n.Payload))
	if err != nil {
		return Result{Reason: "apns_bad_request"}
	}
	req.Header.Set("authorization", "bearer "+token)
	req.Header.Set("apns-topic", c.Topic(n.PushType))
	req.Header.Set("apns-push-type", n.PushType)
	req.Header.Set("content-type", "application/json")
	if n.Priority != 0 {
		req.Header.Set("apns-priority", strconv.Itoa(n.Priority))
	}
	if n.CollapseID != "" {
		req.Header.Set("apns-collapse-id", n.CollapseID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return Result{Reason: "apns_timeout"}
		}
		var netErr interface{ Timeout() bool }
		if errors.As(err, &netErr) && netErr.Timeout() {
			return Result{Reason: "apns_timeout"}
		}
		return Result{Reason: "apns_unreachable"}
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	r := Result{Status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		return r
	}
	var answer struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &answer) == nil && answer.Reason != "" {
		r.Reason = answer.Reason
	} else {
		r.Reason = "apns_status_" + strconv.Itoa(resp.StatusCode)
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		r.RetryAfter = time.Duration(secs) * time.Second
	}
	if r.Reason == "ExpiredProviderToken" {
		c.tokens.expired(token)
	}
	return r
}
