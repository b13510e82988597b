package apns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/fakes/apnsfake"
)

const token = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"

func newClient(t *testing.T, fake *apnsfake.Server) *Client {
	t.Helper()
	key, err := ParseKey(fake.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Key: key, KeyID: apnsfake.KeyID, TeamID: apnsfake.TeamID, Topic: apnsfake.Topic,
		URL: fake.URL, TLS: fake.TLS(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func alert(t *testing.T) []byte {
	t.Helper()
	b, ok := AlertPayload(Alert{Title: "Deploy", Body: "running: 3 of 5", ThreadID: "ev1", Data: map[string]string{"event_id": "ev1"}})
	if !ok {
		t.Fatal("payload does not fit")
	}
	return b
}

// TestSendIsAcceptedByAPNs: the fake (which checks the token with the public key, the topic,
// the push type, HTTP/2 and the payload) accepts an alert, with the headers sent.
func TestSendIsAcceptedByAPNs(t *testing.T) {
	t.Parallel()
	fake := apnsfake.New(t)
	c := newClient(t, fake)
	r := c.Send(t.Context(), Notification{Token: token, PushType: PushTypeAlert, Priority: 10, CollapseID: "ev1", Payload: alert(t)})
	if !r.OK() {
		t.Fatalf("Send: %+v; the fake refused %v", r, fake.Refused())
	}
	got := fake.Received(token)
	if len(got) != 1 || got[0].Priority != "10" || got[0].CollapseID != "ev1" || got[0].Topic != apnsfake.Topic {
		t.Fatalf("received %+v", got)
	}
	aps := got[0].Payload["aps"].(map[string]any)
	if aps["thread-id"] != "ev1" || aps["alert"].(map[string]any)["title"] != "Deploy" || got[0].Payload["event_id"] != "ev1" {
		t.Fatalf("payload %v", got[0].Payload)
	}
}

// TestProviderTokenIsKeptAndReplacedWhenExpired: one token serves many requests; after Apple
// calls it expired the next request carries a new one.
func TestProviderTokenIsKeptAndReplacedWhenExpired(t *testing.T) {
	t.Parallel()
	fake := apnsfake.New(t)
	c := newClient(t, fake)
	first, err := c.tokens.get()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.tokens.get(); again != first {
		t.Fatal("a second request minted another token")
	}
	fake.Answer(token, apnsfake.Answer{Status: http.StatusForbidden, Reason: "ExpiredProviderToken"})
	r := c.Send(t.Context(), Notification{Token: token, PushType: PushTypeAlert, Payload: alert(t)})
	if r.Reason != "ExpiredProviderToken" || !r.Retryable() {
		t.Fatalf("Send: %+v, want a retryable ExpiredProviderToken", r)
	}
	if next, _ := c.tokens.get(); next == first {
		t.Fatal("the expired token is still used")
	}
	// An hour on, the token is replaced without Apple asking.
	c.tokens.now = func() time.Time { return time.Now().Add(time.Hour) }
	old, _ := c.tokens.get()
	c.tokens.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if newer, _ := c.tokens.get(); newer == old {
		t.Fatal("a token older than 50 minutes is still used")
	}
}

// TestAnswersAreClassified: what the caller does with each answer of APNs.
func TestAnswersAreClassified(t *testing.T) {
	t.Parallel()
	fake := apnsfake.New(t)
	c := newClient(t, fake)
	for _, tt := range []struct {
		answer             apnsfake.Answer
		retryable, invalid bool
		retryAfter         time.Duration
	}{
		{apnsfake.Answer{Status: http.StatusGone, Reason: "Unregistered"}, false, true, 0},
		{apnsfake.Answer{Status: http.StatusBadRequest, Reason: "BadDeviceToken"}, false, true, 0},
		{apnsfake.Answer{Status: http.StatusTooManyRequests, Reason: "TooManyRequests", RetryAfter: 3}, true, false, 3 * time.Second},
		{apnsfake.Answer{Status: http.StatusServiceUnavailable, Reason: "ServiceUnavailable"}, true, false, 0},
		{apnsfake.Answer{Status: http.StatusBadRequest, Reason: "BadExpirationDate"}, false, false, 0},
	} {
		fake.Answer(token, tt.answer)
		r := c.Send(t.Context(), Notification{Token: token, PushType: PushTypeAlert, Payload: alert(t)})
		if r.Status != tt.answer.Status || r.Reason != tt.answer.Reason || r.Retryable() != tt.retryable ||
			r.Invalid() != tt.invalid || r.RetryAfter != tt.retryAfter {
			t.Errorf("%+v: got %+v (retryable %v, invalid %v)", tt.answer, r, r.Retryable(), r.Invalid())
		}
	}
}

// TestWrongKeyIsRefused: a token signed by another key is refused, as Apple would.
func TestWrongKeyIsRefused(t *testing.T) {
	t.Parallel()
	fake := apnsfake.New(t)
	c := newClient(t, fake)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.tokens.key = other
	r := c.Send(t.Context(), Notification{Token: token, PushType: PushTypeAlert, Payload: alert(t)})
	if r.Status != http.StatusForbidden || r.Reason != "InvalidProviderToken" || r.Retryable() {
		t.Fatalf("Send with another key: %+v", r)
	}
}

// TestLargeAlertIsShortened: over 4 KB, the alert keeps the title, a preview and the ids.
func TestLargeAlertIsShortened(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("line of log output\n", 400)
	b, ok := AlertPayload(Alert{Title: "Deploy", Body: big, ThreadID: "ev1",
		Data: map[string]string{"event_id": "ev1", "channel_id": "C", "message": big}, Wake: []string{"event_id", "channel_id"}})
	if !ok || len(b) > MaxPayload {
		t.Fatalf("shortened payload: %d bytes, ok %v", len(b), ok)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	body := m["aps"].(map[string]any)["alert"].(map[string]any)["body"].(string)
	if m["provider_mode"] != "wakeup" || m["event_id"] != "ev1" || m["channel_id"] != "C" || m["message"] != nil ||
		len([]rune(body)) != previewRunes || strings.Contains(body, "\n") {
		t.Fatalf("shortened payload %s", b)
	}
	if _, ok := AlertPayload(Alert{Title: strings.Repeat("x", 5000)}); !ok {
		t.Fatal("a long title is not shortened")
	}
}

func TestParseKeyRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "not pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := ParseKey([]byte(in)); err == nil {
			t.Errorf("ParseKey(%q) accepted", in)
		}
	}
}

// FuzzParseKey: a key file of any content is refused or read, never a panic.
func FuzzParseKey(f *testing.F) {
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := ParseKey(data); err == nil && k == nil {
			t.Fatal("no key and no error")
		}
	})
}
