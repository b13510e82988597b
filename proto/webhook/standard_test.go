package webhook_test

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"pushgo.dev/gateway/proto/webhook"
)

// TestSignStandardVerifiesWithTheLibrary: a receiver on the Standard Webhooks library, given
// the secret as issued, accepts what SignStandard signs and refuses a changed body or id.
func TestSignStandardVerifiesWithTheLibrary(t *testing.T) {
	t.Parallel()
	secret := webhook.NewSecret()
	receiver, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("the library refuses a secret of NewSecret, %q: %v", secret, err)
	}
	body := []byte(`{"delivery_id":"d1","channel_id":"C","data":{"title":"hi"}}`)
	now := time.Now()
	headers := func(id string) http.Header {
		h := http.Header{}
		h.Set(webhook.HeaderWebhookID, id)
		h.Set(webhook.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(webhook.HeaderWebhookSignature, webhook.SignStandard(secret, "d1", now, body))
		return h
	}
	if err := receiver.Verify(body, headers("d1")); err != nil {
		t.Fatalf("the library refuses our signature: %v", err)
	}
	if err := receiver.Verify([]byte(`{"delivery_id":"d1"}`), headers("d1")); err == nil {
		t.Error("the library accepts a changed body")
	}
	if err := receiver.Verify(body, headers("d2")); err == nil {
		t.Error("the library accepts another webhook-id")
	}
	// The library signs the same bytes (its own signer, same key): a known answer.
	want, err := receiver.Sign("d1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	if got := webhook.SignStandard(secret, "d1", now, body); got != want {
		t.Errorf("SignStandard = %q, the library signs %q", got, want)
	}
}

// TestStandardKey: which bytes key the Standard Webhooks signature, for each form of secret.
func TestStandardKey(t *testing.T) {
	t.Parallel()
	raw := []byte("0123456789abcdef0123456789abcdef\xfb\xff")
	for _, tt := range []struct {
		name, secret string
		want         []byte
	}{
		{"standard base64 (NewSecret)", "whsec_" + base64.StdEncoding.EncodeToString(raw), raw},
		{"unpadded base64url (secrets issued before)", "whsec_" + base64.RawURLEncoding.EncodeToString(raw), raw},
		{"anything else: its own bytes", "whsec_not base64!", []byte("not base64!")},
	} {
		if got := webhook.StandardKey(tt.secret); string(got) != string(tt.want) {
			t.Errorf("%s: StandardKey(%q) = %q, want %q", tt.name, tt.secret, got, tt.want)
		}
	}
}
