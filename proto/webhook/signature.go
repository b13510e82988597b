package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// secretPrefix marks webhook secrets so they are recognisable in configs and by secret scanners.
const secretPrefix = "whsec_"

// secretBytes is the entropy of a secret: 256 bits, the output size of SHA-256.
const secretBytes = 32

// Signature verification errors. Verify returns them unwrapped; compare with errors.Is.
var (
	// ErrBadSignatureHeader means the header is not "t=<digits>,v1=<64 hex>[,v1=...]": a
	// missing or repeated t, no v1 entry, an entry without '=', or a v1 that is not 64 hex digits.
	ErrBadSignatureHeader = errors.New("webhook: malformed signature header")
	// ErrSignatureMismatch means no v1 entry is the HMAC of the body under the secret: the body
	// was changed, the secret is wrong, or the header was forged.
	ErrSignatureMismatch = errors.New("webhook: signature mismatch")
	// ErrTimestampOutOfTolerance means the signature is valid but its t is further than the
	// tolerance from now (in either direction): a replay or a badly skewed clock.
	ErrTimestampOutOfTolerance = errors.New("webhook: signature timestamp out of tolerance")
)

// NewSecret returns a new random webhook secret: "whsec_" followed by the standard base64
// (44 characters, padded) of 32 random bytes from crypto/rand, the Standard Webhooks form.
// The whole string, prefix included, is the HMAC key of the X-Pushgo-Signature (Sign and
// Verify); the decoded bytes are the key of the webhook-signature (SignStandard). It is
// generated once at registration and shown to the user once. Safe for concurrent use.
func NewSecret() string {
	b := make([]byte, secretBytes)
	// crypto/rand.Read never returns an error (it crashes the program if the OS cannot
	// supply randomness), so there is nothing to handle here.
	_, _ = rand.Read(b)
	return secretPrefix + base64.StdEncoding.EncodeToString(b)
}

// SecretBinding is the additional data a device's webhook secret is sealed with at rest
// (secretbox.Box.Seal and Open): it names the record and the field, so a sealed secret copied
// into another device's record, or into another field, does not open.
func SecretBinding(deviceKey string) string {
	return "pushgo_devices/" + deviceKey + "/webhook_secret"
}

// Sign returns the X-Pushgo-Signature value for body sent at time t:
// "t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(secret, "<t>.<raw body>")>". The key is
// the secret string's bytes as returned by NewSecret; body must be the exact bytes sent.
// Sub-second precision of t is dropped. Safe for concurrent use.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

// mac computes HMAC-SHA256(secret, ts + "." + body), with ts exactly as written in the header.
func mac(secret, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a signature header (the value of HeaderSignature) against body, the raw
// request body. The header is a comma-separated list of key=value entries (spaces around
// entries are ignored): exactly one t=<decimal unix seconds> and one or more v1=<64 hex
// digits>; entries with other keys are ignored, for forward compatibility. Any v1 entry
// equal to the HMAC (compared in constant time) is a match, so a sender may sign with an
// old and a new secret while a secret is rotated.
//
// The signature is checked before the time, and then t must be within tolerance of now in
// either direction; tolerance <= 0 disables the time check (receivers should use a few
// minutes and deduplicate on HeaderDeliveryID, since a retry is signed again).
//
// Verify returns nil, ErrBadSignatureHeader, ErrSignatureMismatch or
// ErrTimestampOutOfTolerance. It does not panic on any input and is safe for concurrent use.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, sigs, ok := parseHeader(header)
	if !ok {
		return ErrBadSignatureHeader
	}
	want := mac(secret, ts, body)
	matched := false
	for _, s := range sigs {
		// Compare every entry so the time taken does not depend on which one matched.
		if hmac.Equal(s, want) {
			matched = true
		}
	}
	if !matched {
		return ErrSignatureMismatch
	}
	if tolerance <= 0 {
		return nil
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil { // unreachable: parseHeader checked ts
		return ErrBadSignatureHeader
	}
	// time.Sub saturates, so absurd timestamps land outside any tolerance instead of wrapping.
	d := now.Sub(time.Unix(sec, 0))
	if d > tolerance || d < -tolerance {
		return ErrTimestampOutOfTolerance
	}
	return nil
}

// parseHeader splits a signature header into the timestamp, as written, and the decoded v1
// signatures. ok is false unless there is exactly one well-formed t and at least one v1, and
// every v1 is 64 hex digits.
func parseHeader(header string) (ts string, sigs [][]byte, ok bool) {
	haveT := false
	for _, item := range strings.Split(header, ",") {
		key, val, found := strings.Cut(strings.Trim(item, " \t"), "=")
		if !found {
			return "", nil, false
		}
		switch key {
		case "t":
			if haveT || !isTimestamp(val) {
				return "", nil, false
			}
			ts, haveT = val, true
		case "v1":
			if len(val) != 2*sha256.Size {
				return "", nil, false
			}
			s, err := hex.DecodeString(val)
			if err != nil {
				return "", nil, false
			}
			sigs = append(sigs, s)
		}
	}
	if !haveT || len(sigs) == 0 {
		return "", nil, false
	}
	return ts, sigs, true
}

// isTimestamp reports whether s is 1 to 18 decimal digits: unix seconds with no sign, and
// short enough to fit in an int64.
func isTimestamp(s string) bool {
	if len(s) == 0 || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
