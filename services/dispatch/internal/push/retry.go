package push

import (
	"context"
	"time"
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
