// Package auth checks the gateway token (PUSHGO_TOKEN / --token): every request but the health
// checks must carry "Authorization: Bearer <token>" when one is configured.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// Token is the configured gateway token; the zero value accepts every request.
type Token struct {
	sum [sha256.Size]byte
	set bool
}

// NewToken returns a checker for token ("" disables the check).
func NewToken(token string) Token {
	if token == "" {
		return Token{}
	}
	return Token{sum: sha256.Sum256([]byte(token)), set: true}
}

// Enabled reports whether a token is required.
func (t Token) Enabled() bool { return t.set }

// Check reports whether an Authorization header value carries the token. The scheme is
// case-insensitive. The comparison takes the same time whatever the presented token (both
// sides are hashed first, so not even the length leaks).
func (t Token) Check(header string) bool {
	if !t.set {
		return true
	}
	fields := strings.Fields(header)
	if len(fields) != 2 || !strings.EqualFold(fields[0], "bearer") {
		return false
	}
	got := sha256.Sum256([]byte(fields[1]))
	return subtle.ConstantTimeCompare(got[:], t.sum[:]) == 1
}
