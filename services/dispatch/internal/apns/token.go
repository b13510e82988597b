package apns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"

	"pushgo.dev/gateway/services/dispatch/internal/jws"
)

// tokenLifetime is how long a provider token is used. Apple refuses one older than an hour
// (ExpiredProviderToken) and one minted more often than every 20 minutes
// (TooManyProviderTokenUpdates); 50 minutes sits between with room for clock skew.
const tokenLifetime = 50 * time.Minute

// ParseKey reads the private key of an APNs auth key file (the .p8 Apple lets you download
// once): a PEM "PRIVATE KEY" block holding a PKCS#8 ECDSA P-256 key.
func ParseKey(p8 []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(p8)
	if block == nil {
		return nil, errors.New("apns: key file: no PEM block (want the .p8 file as downloaded)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("apns: key file: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("apns: key file: not an ECDSA P-256 key")
	}
	return ec, nil
}

// tokens mints the provider token (a JWT signed ES256 with the team's key) and keeps it for
// tokenLifetime, so that every request of that time carries the same one. Safe for concurrent
// use.
type tokens struct {
	key    *ecdsa.PrivateKey
	keyID  string
	teamID string
	now    func() time.Time

	mu      sync.Mutex
	current string
	issued  time.Time
}

// get returns the token to send, minting a new one when the current one is tokenLifetime old.
func (t *tokens) get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.current != "" && now.Sub(t.issued) < tokenLifetime && !now.Before(t.issued) {
		return t.current, nil
	}
	tok, err := t.mint(now)
	if err != nil {
		return "", err
	}
	t.current, t.issued = tok, now
	return tok, nil
}

// expired drops token when Apple called it expired (ExpiredProviderToken: a clock ahead of
// Apple's, or a token kept too long), so that the next get mints another. A token other than
// the current one was already replaced by a concurrent request.
func (t *tokens) expired(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current == token {
		t.current = ""
	}
}

func (t *tokens) mint(now time.Time) (string, error) {
	header := struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}{"ES256", t.keyID}
	claims := struct {
		Iss string `json:"iss"`
		Iat int64  `json:"iat"`
	}{t.teamID, now.Unix()}
	return jws.Sign(header, claims, func(digest []byte) ([]byte, error) {
		r, s, err := ecdsa.Sign(rand.Reader, t.key, digest)
		if err != nil {
			return nil, fmt.Errorf("apns: sign the provider token: %w", err)
		}
		// JWS ES256: the signature is r and s, each as 32 big-endian bytes.
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	})
}
