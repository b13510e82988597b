package push

import (
	"context"
	"strings"
	"time"

	"pushgo.dev/gateway/proto/metrics"
)

// Back-off between the attempts of one delivery (webhooks and providers).
const (
	firstBackoff = 200 * time.Millisecond
	maxBackoff   = 2 * time.Second
)

// retrying makes attempts of one delivery until one succeeds (why ""), one fails for good
// (retry false), or the next wait would outlast ctx's deadline, the op's delivery budget. It
// waits firstBackoff doubling to maxBackoff between attempts, or the receiver's Retry-After
// (wait) when that is longer. It returns the attempts made and the last attempt's why.
func retrying(ctx context.Context, try func(context.Context) (wait time.Duration, retry bool, why string)) (attempts int, why string) {
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		wait, retry, why := try(ctx)
		if why == "" || !retry {
			return attempt, why
		}
		wait = max(wait, backoff)
		backoff = min(2*backoff, maxBackoff)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return attempt, why
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, why
		case <-t.C:
		}
	}
}

// answer is a push provider's reply to one attempt (apns.Result, fcm.Result).
type answer interface {
	OK() bool
	Retryable() bool
	Invalid() bool
	Wait() time.Duration
	Why() string
}

// sendRetrying makes attempts of send with retrying and reads each answer: the reason of a
// failure is prefix + the provider's (providerReason), and invalid reports that the provider
// refused the token for good.
func sendRetrying[A answer](ctx context.Context, prefix string, send func(context.Context) A) (attempts int, why string, invalid bool) {
	provider := strings.TrimSuffix(prefix, "_")
	attempts, why = retrying(ctx, func(ctx context.Context) (time.Duration, bool, string) {
		began := time.Now()
		a := send(ctx)
		metrics.ProviderRequests.WithLabelValues(provider, metrics.Result(a.OK())).Observe(metrics.Since(began))
		if a.OK() {
			return 0, false, ""
		}
		invalid = a.Invalid()
		return a.Wait(), a.Retryable(), providerReason(prefix, a.Why())
	})
	return attempts, why, invalid && why != ""
}
