// Package fcmfake is a local stand-in for Firebase Cloud Messaging's HTTP v1 API and Google's
// OAuth2 token endpoint, for tests: one TLS HTTP/2 server that checks what Google checks — the
// JWT-bearer assertion's RS256 signature with the service account's public key, its issuer,
// audience, scope and times; the bearer token on every send; the message's JSON shape (a
// token, string data values, a known android priority) — and answers as FCM does. Answers can
// be scripted per registration token (Answer), and every accepted message is kept.
//
// Assertions are verified with github.com/golang-jwt/jwt/v5, not with the gateway's code.
package fcmfake

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identity of the fake's project and service account.
const (
	ProjectID   = "pushgo-test"
	ClientEmail = "gateway@pushgo-test.iam.gserviceaccount.com"
	KeyID       = "0123456789abcdef"
	scope       = "https://www.googleapis.com/auth/firebase.messaging"
)

// Message is one accepted message.
type Message struct {
	Token        string
	Data         map[string]string
	Notification map[string]string
	Priority     string
	CollapseKey  string
	At           time.Time
}

// Answer is a scripted reply: an HTTP status and FCM's error code ("" for 200).
type Answer struct {
	Status     int
	ErrorCode  string // UNREGISTERED, INVALID_ARGUMENT, QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL
	RetryAfter int
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	key *rsa.PrivateKey

	mu       sync.Mutex
	issued   map[string]bool // access tokens handed out
	grants   int
	script   map[string][]Answer
	received []Message
	refused  []string
	delay    time.Duration
}

// New starts a fake with a fresh service account key; it is closed when t ends.
func New(t interface {
	Helper()
	Cleanup(func())
	Fatal(...any)
}) *Server {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{key: key, issued: map[string]bool{}, script: map[string][]Answer{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /v1/projects/{project}/{method}", s.send)
	s.Server = httptest.NewUnstartedServer(mux)
	s.EnableHTTP2 = true
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// Credentials is a service account key file for the fake: its token_uri is the fake's.
func (s *Server) Credentials() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		panic(err) // an RSA key always marshals
	}
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": ProjectID, "private_key_id": KeyID,
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": ClientEmail, "token_uri": s.URL + "/token",
	})
	return b
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

// Answer scripts the next replies to a registration token, in order.
func (s *Server) Answer(token string, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script[token] = append(s.script[token], answers...)
}

// Delay makes every send wait d (a slow FCM).
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Revoke makes every access token issued so far invalid (FCM answers 401 to them).
func (s *Server) Revoke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued = map[string]bool{}
}

// Grants is how many access tokens were issued.
func (s *Server) Grants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants
}

// Received returns the accepted messages for token ("" for all).
func (s *Server) Received(token string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.received {
		if token == "" || m.Token == token {
			out = append(out, m)
		}
	}
	return out
}

// Refused returns why each malformed request was refused.
func (s *Server) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refused...)
}

func (s *Server) refuse(w http.ResponseWriter, status int, code, why string) {
	s.mu.Lock()
	s.refused = append(s.refused, fmt.Sprintf("%d %s", status, why))
	s.mu.Unlock()
	writeError(w, status, code, why, 0)
}

// token is the OAuth2 token endpoint: the JWT-bearer grant with a service account assertion.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		s.refuse(w, http.StatusBadRequest, "INVALID_ARGUMENT", "unsupported grant")
		return
	}
	var claims jwt.MapClaims
	tok, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), &claims, func(t *jwt.Token) (any, error) {
		if t.Header["kid"] != KeyID {
			return nil, fmt.Errorf("kid %v", t.Header["kid"])
		}
		return &s.key.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(ClientEmail), jwt.WithAudience(s.URL+"/token"),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired(), jwt.WithLeeway(time.Minute))
	if err != nil || !tok.Valid {
		s.refuse(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("invalid_grant: %v", err))
		return
	}
	if sc, _ := claims["scope"].(string); !strings.Contains(" "+sc+" ", " "+scope+" ") {
		s.refuse(w, http.StatusBadRequest, "INVALID_ARGUMENT", "invalid_scope")
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	access := "ya29.fake-" + hex.EncodeToString(b)
	s.mu.Lock()
	s.issued[access] = true
	s.grants++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "expires_in": 3599, "token_type": "Bearer"})
}

// send is messages:send.
func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		s.refuse(w, http.StatusBadRequest, "INVALID_ARGUMENT", "HTTP/1")
		return
	}
	if r.PathValue("project") != ProjectID || r.PathValue("method") != "messages:send" {
		s.refuse(w, http.StatusNotFound, "NOT_FOUND", "path "+r.URL.Path)
		return
	}
	access, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	ok, delay := s.issued[access], s.delay
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials.", 0)
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	var body struct {
		Message struct {
			Token        string            `json:"token"`
			Data         map[string]string `json:"data"`
			Notification map[string]string `json:"notification"`
			Android      *struct {
				Priority    string `json:"priority"`
				CollapseKey string `json:"collapse_key"`
			} `json:"android"`
		} `json:"message"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil { // a data value that is not a string fails here too
		s.refuse(w, http.StatusBadRequest, "INVALID_ARGUMENT", "bad JSON: "+err.Error())
		return
	}
	m := body.Message
	if m.Token == "" {
		s.refuse(w, http.StatusBadRequest, "INVALID_ARGUMENT", "no message.token")
		return
	}
	msg := Message{Token: m.Token, Data: m.Data, Notification: m.Notification}
	if m.Android != nil {
		if m.Android.Priority != "high" && m.Android.Priority != "normal" && m.Android.Priority != "" {
			s.refuse(w, http.StatusBadRequest, "INVALID_ARGUMENT", "android.priority "+m.Android.Priority)
			return
		}
		msg.Priority, msg.CollapseKey = m.Android.Priority, m.Android.CollapseKey
	}
	s.mu.Lock()
	var a Answer
	if q := s.script[m.Token]; len(q) > 0 {
		a, s.script[m.Token] = q[0], q[1:]
	}
	if a.Status == 0 || a.Status == http.StatusOK {
		msg.At = time.Now()
		s.received = append(s.received, msg)
	}
	s.mu.Unlock()
	if a.Status == 0 || a.Status == http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"name": "projects/" + ProjectID + "/messages/0:1"})
		return
	}
	message := "scripted"
	if a.ErrorCode == "INVALID_ARGUMENT" {
		message = "The registration token is not a valid FCM registration token" // FCM's words
	}
	writeError(w, a.Status, a.ErrorCode, message, a.RetryAfter)
}

// writeError answers in FCM's shape: google.rpc.Status with an FcmError detail.
func writeError(w http.ResponseWriter, status int, code, message string, retryAfter int) {
	w.Header().Set("Content-Type", "application/json")
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	rpcStatus := map[int]string{400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
		500: "INTERNAL", 503: "UNAVAILABLE"}[status]
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": status, "message": message, "status": rpcStatus,
		"details": []map[string]string{{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}},
	}})
}
