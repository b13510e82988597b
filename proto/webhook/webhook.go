// Package webhook is the webhook wire contract shared by the service that registers webhooks
// and the one that delivers them (DESIGN.md §5, §10.3): the header names, the secret format,
// the X-Pushgo-Signature scheme and the Standard Webhooks one, and the rules for which URLs a webhook may point at.
//
// Registration calls NewSecret and URLPolicy.CheckURL; delivery calls Sign and SignStandard
// and dials through DialControl, which re-checks the address actually dialled so that DNS
// rebinding between registration and delivery cannot reach a private network. Receivers (and
// tests) call Verify, or a Standard Webhooks library.
//
// Everything in this package is stateless: all functions and methods are safe for concurrent
// use.
package webhook

// Headers sent with every webhook request.
const (
	// HeaderDeliveryID carries the delivery id, the same value as the body's "delivery_id";
	// it is stable across retries of one delivery, so receivers can deduplicate on it.
	HeaderDeliveryID = "X-Pushgo-Delivery-Id"
	// HeaderSignature carries the value returned by Sign: "t=<unix seconds>,v1=<hex HMAC>".
	HeaderSignature = "X-Pushgo-Signature"
)
