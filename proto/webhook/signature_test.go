package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNewSecret(t *testing.T) {
	t.Parallel()
	a, b := NewSecret(), NewSecret()
	for _, s := range []string{a, b} {
		rest, ok := strings.CutPrefix(s, "whsec_")
		if !ok || len(rest) != 44 {
			t.Fatalf("NewSecret() = %q, want whsec_ + 44 chars", s)
		}
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(raw) != 32 {
			t.Fatalf("NewSecret() = %q: decode = %d bytes, %v; want 32 bytes", s, len(raw), err)
		}
	}
	if a == b {
		t.Errorf("two NewSecret() calls returned the same %q", a)
	}
}

func TestSignKnownAnswer(t *testing.T) {
	t.Parallel()
	const secret = "whsec_test-secret"
	at := time.Unix(1700000000, 999_000_000) // sub-second part is dropped
	body := []byte(`{"delivery_id":"d1","channel_id":"C","data":{"title":"hi"}}`)

	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte("1700000000." + string(body)))
	want := "t=1700000000,v1=" + hex.EncodeToString(h.Sum(nil))

	if got := Sign(secret, at, body); got != want {
		t.Errorf("Sign() = %q, want %q", got, want)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	const secret = "whsec_current"
	const oldSecret = "whsec_previous"
	now := time.Unix(1700000000, 0)
	body := []byte(`{"delivery_id":"d1"}`)
	good := Sign(secret, now, body)
	goodV1 := strings.TrimPrefix(good, "t=1700000000,")
	oldV1 := strings.TrimPrefix(Sign(oldSecret, now, body), "t=1700000000,")
	zeros := strings.Repeat("0", 64)

	tests := []struct {
		name      string
		secret    string
		header    string
		body      []byte
		now       time.Time
		tolerance *time.Duration // nil means 5 minutes
		want      error
	}{
		{name: "round trip", header: good, want: nil},
		{name: "zero tolerance disables time check", header: good, now: now.Add(1000 * time.Hour), tolerance: dur(0), want: nil},
		{name: "negative tolerance disables time check", header: good, now: now.Add(-1000 * time.Hour), tolerance: dur(-1), want: nil},
		{name: "mismatch despite no time check", header: good, body: []byte("x"), tolerance: dur(0), want: ErrSignatureMismatch},
		{name: "within tolerance past", header: good, now: now.Add(5 * time.Minute), want: nil},
		{name: "within tolerance future", header: good, now: now.Add(-5 * time.Minute), want: nil},
		{name: "spaces around entries", header: "t=1700000000, " + goodV1 + " ", want: nil},
		{name: "unknown entries ignored", header: "t=1700000000,v0=xyz,v2=abc," + goodV1, want: nil},
		{name: "second v1 matches", header: "t=1700000000," + oldV1 + "," + goodV1, want: nil},
		{name: "first v1 matches", header: "t=1700000000," + goodV1 + "," + oldV1, want: nil},
		{name: "upper-case hex", header: "t=1700000000,v1=" + strings.ToUpper(strings.TrimPrefix(goodV1, "v1=")), want: nil},
		{name: "changed body", header: good, body: []byte(`{"delivery_id":"d2"}`), want: ErrSignatureMismatch},
		{name: "empty body", header: good, body: []byte{}, want: ErrSignatureMismatch},
		{name: "wrong secret", secret: "whsec_other", header: good, want: ErrSignatureMismatch},
		{name: "only old secret", header: "t=1700000000," + oldV1, want: ErrSignatureMismatch},
		{name: "changed timestamp", header: "t=1700000001," + goodV1, now: now.Add(time.Second), want: ErrSignatureMismatch},
		{name: "zero-padded timestamp", header: "t=01700000000," + goodV1, want: ErrSignatureMismatch},
		{name: "old timestamp", header: good, now: now.Add(5*time.Minute + time.Second), want: ErrTimestampOutOfTolerance},
		{name: "future timestamp", header: good, now: now.Add(-5*time.Minute - time.Second), want: ErrTimestampOutOfTolerance},
		{name: "empty", header: "", want: ErrBadSignatureHeader},
		{name: "missing t", header: goodV1, want: ErrBadSignatureHeader},
		{name: "missing v1", header: "t=1700000000", want: ErrBadSignatureHeader},
		{name: "only unknown entries", header: "t=1700000000,v0=" + zeros, want: ErrBadSignatureHeader},
		{name: "garbage", header: "not a signature", want: ErrBadSignatureHeader},
		{name: "two t", header: "t=1700000000,t=1700000000," + goodV1, want: ErrBadSignatureHeader},
		{name: "empty t", header: "t=," + goodV1, want: ErrBadSignatureHeader},
		{name: "signed t", header: "t=+1700000000," + goodV1, want: ErrBadSignatureHeader},
		{name: "negative t", header: "t=-1," + goodV1, want: ErrBadSignatureHeader},
		{name: "huge t", header: "t=99999999999999999999," + goodV1, want: ErrBadSignatureHeader},
		{name: "short v1", header: "t=1700000000,v1=abcd", want: ErrBadSignatureHeader},
		{name: "non-hex v1", header: "t=1700000000,v1=" + strings.Repeat("z", 64), want: ErrBadSignatureHeader},
		{name: "empty entry", header: "t=1700000000,," + goodV1, want: ErrBadSignatureHeader},
		{name: "entry without =", header: "t=1700000000," + goodV1 + ",junk", want: ErrBadSignatureHeader},
		{name: "semicolons", header: "t=1700000000;" + goodV1, want: ErrBadSignatureHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := secret
			if tt.secret != "" {
				s = tt.secret
			}
			b := body
			if tt.body != nil {
				b = tt.body
			}
			n := now
			if !tt.now.IsZero() {
				n = tt.now
			}
			tol := 5 * time.Minute
			if tt.tolerance != nil {
				tol = *tt.tolerance
			}
			got := Verify(s, tt.header, b, n, tol)
			if !errors.Is(got, tt.want) || (tt.want == nil) != (got == nil) {
				t.Errorf("Verify(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func dur(d time.Duration) *time.Duration { return &d }

// FuzzVerify checks that Verify never panics and only returns its documented errors.
func FuzzVerify(f *testing.F) {
	const secret = "whsec_fuzz"
	now := time.Unix(1700000000, 0)
	body := []byte(`{"delivery_id":"d1"}`)
	f.Add(Sign(secret, now, body), body)
	f.Add("t=1700000000,v1="+strings.Repeat("0", 64)+",v1="+strings.Repeat("f", 64), body)
	f.Add("", []byte{})
	f.Add("t=,v1=", []byte("x"))
	f.Add("t=99999999999999999999,v1=zz", []byte(nil))
	f.Add(",,,==,t=1=2,v1", []byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		for _, tol := range []time.Duration{0, 5 * time.Minute} {
			err := Verify(secret, header, body, now, tol)
			switch {
			case err == nil, errors.Is(err, ErrBadSignatureHeader), errors.Is(err, ErrSignatureMismatch),
				errors.Is(err, ErrTimestampOutOfTolerance):
			default:
				t.Fatalf("Verify(%q) = %v, not one of the documented errors", header, err)
			}
		}
		// Whatever the body, its own signature verifies.
		if err := Verify(secret, Sign(secret, now, body), body, now, time.Minute); err != nil {
			t.Fatalf("Verify(Sign(body)) = %v", err)
		}
	})
}
