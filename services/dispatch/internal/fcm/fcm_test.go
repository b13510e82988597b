package fcm

import (
	"net/http"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/fakes/fcmfake"
)

func newClient(t *testing.T, fake *fcmfake.Server) *Client {
	t.Helper()
	creds, err := ParseCredentials(fake.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Credentials: creds, URL: fake.URL, TLS: fake.TLS(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSendIsAcceptedByFCM: the fake (which checks the assertion with the service account's
// public key, the bearer token and the message's shape) accepts a message, as sent.
func TestSendIsAcceptedByFCM(t *testing.T) {
	t.Parallel()
	fake := fcmfake.New(t)
	c := newClient(t, fake)
	r := c.Send(t.Context(), Message{Token: "tok-1", Data: map[string]string{"event_id": "ev1"}, Title: "Deploy", Body: "running",
		High: true, CollapseKey: "ev1"})
	if !r.OK() {
		t.Fatalf("Send: %+v; refused %v", r, fake.Refused())
	}
	got := fake.Received("tok-1")
	if len(got) != 1 || got[0].Data["event_id"] != "ev1" || got[0].Priority != "high" || got[0].CollapseKey != "ev1" ||
		got[0].Notification["title"] != "Deploy" || got[0].Notification["body"] != "running" {
		t.Fatalf("received %+v", got)
	}
	// The access token is kept: a second message makes no second grant.
	if r := c.Send(t.Context(), Message{Token: "tok-1"}); !r.OK() || fake.Grants() != 1 {
		t.Fatalf("second send: %+v, %d grants", r, fake.Grants())
	}
}

// TestRevokedAccessTokenIsReplaced: a 401 drops the access token; the retry gets a new one.
func TestRevokedAccessTokenIsReplaced(t *testing.T) {
	t.Parallel()
	fake := fcmfake.New(t)
	c := newClient(t, fake)
	if r := c.Send(t.Context(), Message{Token: "tok-1"}); !r.OK() {
		t.Fatalf("Send: %+v", r)
	}
	fake.Revoke()
	r := c.Send(t.Context(), Message{Token: "tok-1"})
	if r.Status != http.StatusUnauthorized || !r.Retryable() {
		t.Fatalf("with a revoked token: %+v", r)
	}
	if r := c.Send(t.Context(), Message{Token: "tok-1"}); !r.OK() || fake.Grants() != 2 {
		t.Fatalf("retry: %+v, %d grants", r, fake.Grants())
	}
}

// TestFCMAnswersAreClassified: what the caller does with each error of FCM.
func TestFCMAnswersAreClassified(t *testing.T) {
	t.Parallel()
	fake := fcmfake.New(t)
	c := newClient(t, fake)
	for _, tt := range []struct {
		answer             fcmfake.Answer
		retryable, invalid bool
		retryAfter         time.Duration
	}{
		{fcmfake.Answer{Status: http.StatusNotFound, ErrorCode: "UNREGISTERED"}, false, true, 0},
		{fcmfake.Answer{Status: http.StatusBadRequest, ErrorCode: "INVALID_ARGUMENT"}, false, true, 0},
		{fcmfake.Answer{Status: http.StatusTooManyRequests, ErrorCode: "QUOTA_EXCEEDED", RetryAfter: 2}, true, false, 2 * time.Second},
		{fcmfake.Answer{Status: http.StatusServiceUnavailable, ErrorCode: "UNAVAILABLE"}, true, false, 0},
		{fcmfake.Answer{Status: http.StatusInternalServerError, ErrorCode: "INTERNAL"}, true, false, 0},
		{fcmfake.Answer{Status: http.StatusForbidden, ErrorCode: "SENDER_ID_MISMATCH"}, false, false, 0},
	} {
		fake.Answer("tok-2", tt.answer)
		r := c.Send(t.Context(), Message{Token: "tok-2"})
		if r.Status != tt.answer.Status || r.Reason != tt.answer.ErrorCode || r.Retryable() != tt.retryable ||
			r.Invalid() != tt.invalid || r.RetryAfter != tt.retryAfter {
			t.Errorf("%+v: got %+v (retryable %v, invalid %v)", tt.answer, r, r.Retryable(), r.Invalid())
		}
	}
}

// TestInvalidArgumentAboutTheMessageKeepsTheToken: only an INVALID_ARGUMENT that names the
// token kills the route.
func TestInvalidArgumentAboutTheMessageKeepsTheToken(t *testing.T) {
	t.Parallel()
	code, token := errorCode([]byte(`{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT",
		"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data"}]}]}}`), 400)
	if code != "INVALID_ARGUMENT" || token {
		t.Fatalf("errorCode = %s, token problem %v", code, token)
	}
	if code, token := errorCode([]byte(`{"error":{"code":400,"status":"INVALID_ARGUMENT",
		"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token"}]}]}}`), 400); code != "INVALID_ARGUMENT" || !token {
		t.Fatalf("a field violation on message.token: %s, %v", code, token)
	}
	if code, _ := errorCode([]byte("<html>bad gateway</html>"), 502); code != "fcm_status_502" {
		t.Fatalf("a non-JSON answer: %s", code)
	}
}

func TestParseCredentialsRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, `[]`, `{"type":"authorized_user"}`,
		`{"type":"service_account","project_id":"p","client_email":"e","private_key":"x","token_uri":"http://insecure/token"}`,
		`{"type":"service_account","project_id":"p","client_email":"e","private_key":"not pem","token_uri":"https://t/token"}`,
	} {
		if _, err := ParseCredentials([]byte(in)); err == nil {
			t.Errorf("ParseCredentials(%s) accepted", in)
		}
	}
}

// FuzzErrorCode: whatever FCM (or a proxy before it) answers, reading its error never panics
// and always names a reason.
func FuzzErrorCode(f *testing.F) {
	f.Add([]byte(`{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`), 404)
	f.Add([]byte(`{"error":{"details":[{"fieldViolations":[{"field":"message.token"}]}]}}`), 400)
	f.Add([]byte(`<html>`), 502)
	f.Add([]byte(`{"error":null}`), 500)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if code, _ := errorCode(body, status); code == "" {
			t.Fatalf("no reason for %q", body)
		}
	})
}

// FuzzParseCredentials: a credentials file of any content is refused or read, never a panic.
func FuzzParseCredentials(f *testing.F) {
	f.Add([]byte(`{"type":"service_account","project_id":"p","client_email":"e","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","token_uri":"https://t/token"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseCredentials(data); err == nil && (c.Key == nil || c.ProjectID == "") {
			t.Fatalf("accepted without a key or project: %q", data)
		}
	})
}
