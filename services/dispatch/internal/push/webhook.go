package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/proto/webhook"
)

// webhookSender posts signed pushes (DESIGN.md §5, §10.3): POST <url> with
// {"delivery_id", "channel_id", "data"}, X-Pushgo-Delivery-Id and X-Pushgo-Signature, and the
// Standard Webhooks headers webhook-id (the delivery id), webhook-timestamp and
// webhook-signature, so that receivers can verify with that scheme's libraries. It retries
// timeouts, connection errors, 5xx and 429 (honouring Retry-After) with backoff until the
// context's deadline, the op's delivery budget; other answers end the op's attempts (what
// happens after the budget is durable.go's). Redirects are not
// followed, and addresses are checked when dialled, so a name cannot be rebound to a private
// address after registration.
type webhookSender struct {
	client *http.Client
	perTry time.Duration
}

func newWebhookSender(cfg Config) *webhookSender {
	dialer := &net.Dialer{Timeout: cfg.WebhookTimeout, Control: webhook.DialControl(cfg.WebhookAllowPrivate)}
	transport := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.WebhookTimeout,
		ResponseHeaderTimeout: cfg.WebhookTimeout,
	}
	return &webhookSender{
		client: &http.Client{
			Transport:     transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		perTry: cfg.WebhookTimeout,
	}
}

// hookAttempt is the result of one webhook attempt.
type hookAttempt struct {
	at      time.Time
	latency time.Duration
	// status is the receiver's HTTP status, 0 when it did not answer.
	status int
	// wait is the receiver's Retry-After; retry says whether another attempt may help.
	wait  time.Duration
	retry bool
	// why is "" on success.
	why string
}

// body encodes the request body of one push.
func hookBody(deliveryID, channelID string, data map[string]string) ([]byte, error) {
	return json.Marshal(struct {
		DeliveryID string            `json:"delivery_id"`
		ChannelID  string            `json:"channel_id"`
		Data       map[string]string `json:"data"`
	}{deliveryID, channelID, data})
}

// send delivers one push, retrying within ctx's deadline, and returns every attempt made, the
// last one last.
func (s *webhookSender) send(ctx context.Context, url, secret, deliveryID, channelID string, data map[string]string) []hookAttempt {
	body, err := hookBody(deliveryID, channelID, data)
	if err != nil {
		return []hookAttempt{{at: time.Now(), why: "encode_failed"}}
	}
	var tries []hookAttempt
	retrying(ctx, func(ctx context.Context) (time.Duration, bool, string) {
		a := s.try(ctx, url, secret, deliveryID, body)
		tries = append(tries, a)
		return a.wait, a.retry, a.why
	})
	return tries
}

// try makes one attempt.
func (s *webhookSender) try(ctx context.Context, url, secret, deliveryID string, body []byte) (a hookAttempt) {
	a.at = time.Now()
	defer func() {
		a.latency = time.Since(a.at)
		metrics.ProviderRequests.WithLabelValues(RouteWebhook, metrics.Result(a.why == "")).Observe(a.latency.Seconds())
	}()
	ctx, cancel := context.WithTimeout(ctx, s.perTry)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		a.why = "webhook_bad_url"
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pushgo-gateway")
	req.Header.Set(webhook.HeaderDeliveryID, deliveryID)
	now := time.Now()
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, now, body))
	req.Header.Set(webhook.HeaderWebhookID, deliveryID)
	req.Header.Set(webhook.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderWebhookSignature, webhook.SignStandard(secret, deliveryID, now, body))
	resp, err := s.client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, webhook.ErrPrivateAddress):
			a.why = "webhook_address_not_allowed"
		case errors.Is(err, context.DeadlineExceeded):
			a.retry, a.why = true, "webhook_timeout"
		default:
			a.retry, a.why = true, "webhook_unreachable"
		}
		return a
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	a.status = resp.StatusCode
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			a.wait = time.Duration(secs) * time.Second
		}
		a.retry, a.why = true, fmt.Sprintf("webhook_status_%d", resp.StatusCode)
	default:
		a.why = fmt.Sprintf("webhook_status_%d", resp.StatusCode)
	}
	return a
}

// durable reports whether a webhook delivery that failed with why goes on the durable retry
// schedule: any answer but a success or 410 Gone (the endpoint is disabled), and no answer
// (timeout, refused). Not a URL the gateway refuses, nor a secret it cannot open: trying again
// cannot help those.
func durable(a hookAttempt) bool {
	switch {
	case a.why == "" || a.status == http.StatusGone:
		return false
	case a.status != 0:
		return true
	default:
		return a.why == "webhook_timeout" || a.why == "webhook_unreachable"
	}
}
