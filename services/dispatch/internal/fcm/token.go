package fcm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"pushgo.dev/gateway/services/dispatch/internal/jws"
)

// Scope is the OAuth2 scope of FCM's send API.
const Scope = "https://www.googleapis.com/auth/firebase.messaging"

// Credentials is the part of a service account key file (the JSON the Firebase console
// downloads) that sending needs.
type Credentials struct {
	ProjectID    string
	ClientEmail  string
	PrivateKeyID string
	Key          *rsa.PrivateKey
	// TokenURI is where access tokens come from (Google's is
	// https://oauth2.googleapis.com/token); tests point it at a fake.
	TokenURI string
}

// ParseCredentials reads a service account key file. Errors name the field, never its value.
func ParseCredentials(data []byte) (*Credentials, error) {
	var f struct {
		Type         string `json:"type"`
		ProjectID    string `json:"project_id"`
		PrivateKeyID string `json:"private_key_id"`
		PrivateKey   string `json:"private_key"`
		ClientEmail  string `json:"client_email"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, errors.New("fcm: credentials file: not JSON")
	}
	switch {
	case f.Type != "service_account":
		return nil, fmt.Errorf("fcm: credentials file: type %q, want service_account", f.Type)
	case f.ProjectID == "" || f.ClientEmail == "" || f.PrivateKey == "":
		return nil, errors.New("fcm: credentials file: project_id, client_email and private_key are required")
	}
	if u, err := url.Parse(f.TokenURI); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("fcm: credentials file: token_uri is not an https URL")
	}
	block, _ := pem.Decode([]byte(f.PrivateKey))
	if block == nil {
		return nil, errors.New("fcm: credentials file: private_key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("fcm: credentials file: private_key is not a PKCS#8 key")
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("fcm: credentials file: private_key is not an RSA key")
	}
	return &Credentials{ProjectID: f.ProjectID, ClientEmail: f.ClientEmail, PrivateKeyID: f.PrivateKeyID, Key: key, TokenURI: f.TokenURI}, nil
}

// tokens keeps the access token. Safe for concurrent use; one refresh at a time.
type tokens struct {
	creds *Credentials
	http  *http.Client
	now   func() time.Time

	mu      sync.Mutex
	current string
	expires time.Time
}

// get returns an access token valid for at least another minute, fetching one when needed.
func (t *tokens) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current != "" && t.now().Add(time.Minute).Before(t.expires) {
		return t.current, nil
	}
	tok, ttl, err := t.fetch(ctx)
	if err != nil {
		return "", err
	}
	t.current, t.expires = tok, t.now().Add(ttl)
	return tok, nil
}

// expired drops token after FCM refused it (401), so that the next get fetches another.
func (t *tokens) expired(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current == token {
		t.current = ""
	}
}

// fetch makes the JWT-bearer grant (RFC 7523) at the token URI.
func (t *tokens) fetch(ctx context.Context) (string, time.Duration, error) {
	assertion, err := t.assertion()
	if err != nil {
		return "", 0, err
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.creds.TokenURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := t.http.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("fcm: token: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("fcm: token: %s", resp.Status)
	}
	var r struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.AccessToken == "" || r.ExpiresIn <= 0 {
		return "", 0, errors.New("fcm: token: no access_token and expires_in in the answer")
	}
	return r.AccessToken, time.Duration(r.ExpiresIn) * time.Second, nil
}

// assertion is the signed JWT the grant presents: the service account asks for FCM's scope.
func (t *tokens) assertion() (string, error) {
	now := t.now()
	header := map[string]string{"alg": "RS256", "typ": "JWT", "kid": t.creds.PrivateKeyID}
	claims := map[string]any{"iss": t.creds.ClientEmail, "scope": Scope, "aud": t.creds.TokenURI,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	return jws.Sign(header, claims, func(digest []byte) ([]byte, error) {
		sig, err := rsa.SignPKCS1v15(rand.Reader, t.creds.Key, crypto.SHA256, digest)
		if err != nil {
			return nil, fmt.Errorf("fcm: sign the token assertion: %w", err)
		}
		return sig, nil
	})
}
