// Package apnsfake is a local stand-in for the Apple Push Notification service, for tests: a
// TLS HTTP/2 server that checks what APNs checks — the provider token's ES256 signature with
// the team's public key, its key id, team and age, the topic and push type, the priority, the
// collapse id and the payload's size and shape — and answers as APNs does. Answers can be
// scripted per device token (Answer), and every accepted notification is kept (Received).
//
// The token is verified with github.com/golang-jwt/jwt/v5, not with the gateway's own code,
// so a fault in how the gateway signs shows here.
package apnsfake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identity of the fake's app and key.
const (
	KeyID  = "ABC123DEFG"
	TeamID = "DEF123GHIJ"
	Topic  = "dev.pushgo.test"
)

// Notification is one accepted push.
type Notification struct {
	Token      string
	PushType   string
	Topic      string
	Priority   string
	CollapseID string
	Payload    map[string]any
	At         time.Time
}

// Answer is a scripted reply: a status and Apple's reason ("" for 200).
type Answer struct {
	Status     int
	Reason     string
	RetryAfter int // seconds, for 429
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	// KeyPEM is the .p8 file of the key the fake trusts (PKCS#8 PEM).
	KeyPEM []byte
	key    *ecdsa.PrivateKey

	mu       sync.Mutex
	verified map[string]time.Time // provider tokens whose signature checked out, by issue time
	script   map[string][]Answer  // by device token, consumed in order
	received []Notification
	refused  []string // why each refused request was refused
	delay    time.Duration
}

// New starts a fake with a fresh key; it is closed when t ends.
func New(t interface {
	Helper()
	Cleanup(func())
	Fatal(...any)
}) *Server {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{key: key, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), script: map[string][]Answer{},
		verified: map[string]time.Time{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.EnableHTTP2 = true
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// CertPEM is the fake's TLS certificate, for a client's trust (or SSL_CERT_FILE).
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// TLS is a client configuration trusting the fake.
func (s *Server) TLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Answer scripts the next replies to token, in order; afterwards it is accepted again.
func (s *Server) Answer(token string, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script[token] = append(s.script[token], answers...)
}

// Delay makes every reply wait d (a slow APNs).
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Received returns the notifications accepted so far, for token ("" for all).
func (s *Server) Received(token string) []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Notification
	for _, n := range s.received {
		if token == "" || n.Token == token {
			out = append(out, n)
		}
	}
	return out
}

// Refused returns why each refused request was refused (400/403 for a malformed request).
func (s *Server) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refused...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	n, status, reason := s.check(r)
	if status != http.StatusOK {
		s.mu.Lock()
		s.refused = append(s.refused, fmt.Sprintf("%d %s", status, reason))
		s.mu.Unlock()
		reply(w, status, reason, 0)
		return
	}
	s.mu.Lock()
	var a Answer
	if q := s.script[n.Token]; len(q) > 0 {
		a, s.script[n.Token] = q[0], q[1:]
	}
	if a.Status == 0 || a.Status == http.StatusOK {
		n.At = time.Now()
		s.received = append(s.received, n)
	}
	s.mu.Unlock()
	if a.Status == 0 || a.Status == http.StatusOK {
		w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000000")
		w.WriteHeader(http.StatusOK)
		return
	}
	reply(w, a.Status, a.Reason, a.RetryAfter)
}

func reply(w http.ResponseWriter, status int, reason string, retryAfter int) {
	w.Header().Set("content-type", "application/json")
	if retryAfter > 0 {
		w.Header().Set("retry-after", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"reason": reason})
}

// check validates a request as APNs does; status is 200 when it may be delivered.
func (s *Server) check(r *http.Request) (n Notification, status int, reason string) {
	if r.ProtoMajor != 2 {
		return n, http.StatusBadRequest, "HTTP2Required" // APNs speaks nothing else
	}
	if r.Method != http.MethodPost {
		return n, http.StatusMethodNotAllowed, "MethodNotAllowed"
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok {
		return n, http.StatusNotFound, "BadPath"
	}
	if b, err := hex.DecodeString(token); err != nil || len(b) == 0 {
		return n, http.StatusBadRequest, "BadDeviceToken"
	}
	if status, reason := s.checkToken(r.Header.Get("authorization")); status != http.StatusOK {
		return n, status, reason
	}
	n = Notification{Token: token, PushType: r.Header.Get("apns-push-type"), Topic: r.Header.Get("apns-topic"),
		Priority: r.Header.Get("apns-priority"), CollapseID: r.Header.Get("apns-collapse-id")}
	switch {
	case n.Topic == "":
		return n, http.StatusBadRequest, "MissingTopic"
	case n.PushType == "alert" && n.Topic != Topic,
		n.PushType == "liveactivity" && n.Topic != Topic+".push-type.liveactivity":
		return n, http.StatusBadRequest, "DeviceTokenNotForTopic"
	case n.PushType != "alert" && n.PushType != "liveactivity":
		return n, http.StatusBadRequest, "InvalidPushType"
	case n.Priority != "" && n.Priority != "5" && n.Priority != "10":
		return n, http.StatusBadRequest, "BadPriority"
	case len(n.CollapseID) > 64:
		return n, http.StatusBadRequest, "BadCollapseId"
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return n, http.StatusBadRequest, "BadPayload"
	}
	if len(body) > 4096 {
		return n, http.StatusRequestEntityTooLarge, "PayloadTooLarge"
	}
	if len(body) == 0 {
		return n, http.StatusBadRequest, "PayloadEmpty"
	}
	if err := json.Unmarshal(body, &n.Payload); err != nil {
		return n, http.StatusBadRequest, "BadPayload"
	}
	aps, ok := n.Payload["aps"].(map[string]any)
	if !ok {
		return n, http.StatusBadRequest, "BadPayload: no aps dictionary"
	}
	if why := checkAPS(n.PushType, aps); why != "" {
		return n, http.StatusBadRequest, "BadPayload: " + why
	}
	return n, http.StatusOK, ""
}

// checkAPS checks the aps dictionary for the push type, as the device would need it.
func checkAPS(pushType string, aps map[string]any) string {
	if pushType == "alert" {
		if _, ok := aps["alert"]; !ok {
			return "alert push without aps.alert"
		}
		return ""
	}
	if _, ok := aps["timestamp"].(float64); !ok {
		return "live activity without a numeric timestamp"
	}
	switch aps["event"] {
	case "start":
		for _, k := range []string{"attributes-type", "attributes", "content-state", "alert"} {
			if _, ok := aps[k]; !ok {
				return "start without " + k
			}
		}
	case "update":
		if _, ok := aps["content-state"].(map[string]any); !ok {
			return "update without content-state"
		}
	case "end":
	default:
		return fmt.Sprintf("live activity event %v", aps["event"])
	}
	return ""
}

// checkToken verifies the provider token as APNs does: its signature once (then remembered,
// as a connection's token is), its age on every request.
func (s *Server) checkToken(auth string) (int, string) {
	raw, ok := strings.CutPrefix(auth, "bearer ")
	if !ok {
		return http.StatusForbidden, "MissingProviderToken"
	}
	s.mu.Lock()
	issued, known := s.verified[raw]
	s.mu.Unlock()
	if known {
		return tokenAge(issued)
	}
	var claims jwt.MapClaims
	tok, err := jwt.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		if t.Header["kid"] != KeyID {
			return nil, fmt.Errorf("kid %v", t.Header["kid"])
		}
		return &s.key.PublicKey, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithoutClaimsValidation())
	if err != nil || !tok.Valid {
		return http.StatusForbidden, "InvalidProviderToken"
	}
	if claims["iss"] != TeamID {
		return http.StatusForbidden, "InvalidProviderToken"
	}
	iat, ok := claims["iat"].(float64)
	if !ok {
		return http.StatusForbidden, "InvalidProviderToken"
	}
	issued = time.Unix(int64(iat), 0)
	s.mu.Lock()
	s.verified[raw] = issued
	s.mu.Unlock()
	return tokenAge(issued)
}

// tokenAge refuses a provider token issued over an hour ago (or ahead of the clock).
func tokenAge(issued time.Time) (int, string) {
	if age := time.Since(issued); age > time.Hour || age < -time.Minute {
		return http.StatusForbidden, "ExpiredProviderToken"
	}
	return http.StatusOK, ""
}
