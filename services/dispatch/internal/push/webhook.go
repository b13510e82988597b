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

	"pushgo.dev/gateway/proto/webhook"
)

// webhookSender posts signed pushes (DESIGN.md §5, §10.3): POST <url> with
// {"delivery_id", "channel_id", "data"}, X-Pushgo-Delivery-Id and X-Pushgo-Signature, and the
// Standard Webhooks headers webhook-id (the delivery id), webhook-timestamp and
// webhook-signature, so that receivers can verify with that scheme's libraries. It retries
// timeouts, connection errors, 5xx and 429 (honouring Retry-After) with backoff until the
// context's deadline, the op's delivery budget; other answers are final. Redirects are not
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

// send delivers one push and returns the attempts made and, when it failed, why.
func (s *webhookSender) send(ctx context.Context, url, secret, deliveryID, channelID string, data map[string]string) (int, string) {
	body, err := json.Marshal(struct {
		DeliveryID string            `json:"delivery_id"`
		ChannelID  string            `json:"channel_id"`
		Data       map[string]string `json:"data"`
	}{deliveryID, channelID, data})
	if err != nil {
		return 0, "encode_failed"
	}
	return retrying(ctx, func(ctx context.Context) (time.Duration, bool, string) {
		return s.try(ctx, url, secret, deliveryID, body)
	})
}

// try makes one attempt. why is "" on success; retry says whether another attempt may help;
// wait is the receiver's Retry-After.
func (s *webhookSender) try(ctx context.Context, url, secret, deliveryID string, body []byte) (wait time.Duration, retry bool, why string) {
	ctx, cancel := context.WithTimeout(ctx, s.perTry)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, false, "webhook_bad_url"
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
		if errors.Is(err, webhook.ErrPrivateAddress) {
			return 0, false, "webhook_address_not_allowed"
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, true, "webhook_timeout"
		}
		return 0, true, "webhook_unreachable"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, false, ""
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		var wait time.Duration
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			wait = time.Duration(secs) * time.Second
		}
		return wait, true, fmt.Sprintf("webhook_status_%d", resp.StatusCode)
	default:
		return 0, false, fmt.Sprintf("webhook_status_%d", resp.StatusCode)
	}
}
