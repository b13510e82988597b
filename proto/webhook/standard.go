package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers (spec v1), sent beside X-Pushgo-* so that receivers can verify a
// delivery with the scheme's libraries (DESIGN.md §10.3).
const (
	// HeaderWebhookID is the delivery id, as HeaderDeliveryID: stable across attempts, the
	// receiver's idempotency key.
	HeaderWebhookID = "webhook-id"
	// HeaderWebhookTimestamp is the Unix time in seconds of this attempt.
	HeaderWebhookTimestamp = "webhook-timestamp"
	// HeaderWebhookSignature is SignStandard's value: "v1,<base64 HMAC-SHA256>".
	HeaderWebhookSignature = "webhook-signature"
)

// StandardKey returns the HMAC key of the Standard Webhooks signature for a secret: the bytes
// its text after "whsec_" encodes in standard base64, as the scheme's libraries decode it.
// Secrets issued before the scheme was adopted are unpadded base64url (NewSecret's earlier
// form); their bytes are decoded that way, and a receiver on a Standard Webhooks library
// uses "whsec_" + the standard base64 of those bytes (README, "Webhooks"). Any other text
// (never issued by NewSecret) is used as its own bytes.
func StandardKey(secret string) []byte {
	rest := strings.TrimPrefix(secret, secretPrefix)
	if key, err := base64.StdEncoding.DecodeString(rest); err == nil {
		return key
	}
	if key, err := base64.RawURLEncoding.DecodeString(rest); err == nil {
		return key
	}
	return []byte(rest)
}

// SignStandard returns the webhook-signature value for a delivery with id sent at time t:
// "v1,<standard base64 HMAC-SHA256(key, "<id>.<unix seconds>.<raw body>")>" with key from
// StandardKey(secret). Sub-second precision of t is dropped; the timestamp header must be
// strconv.FormatInt(t.Unix(), 10).
func SignStandard(secret, id string, t time.Time, body []byte) string {
	return signStandard(StandardKey(secret), id, strconv.FormatInt(t.Unix(), 10), body)
}

func signStandard(key []byte, id, ts string, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil))
}
