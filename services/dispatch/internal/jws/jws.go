// Package jws assembles the compact JSON Web Signatures the push providers take: APNs'
// provider token (ES256) and Google's service-account assertion (RS256). Each caller brings
// its own signature over the SHA-256 of the signing input.
package jws

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
)

// Sign returns header.claims.signature, each base64url without padding: header and claims as
// JSON, the signature sign makes of the SHA-256 digest of the first two parts.
func Sign(header, claims any, sign func(digest []byte) ([]byte, error)) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	sig, err := sign(digest[:])
	if err != nil {
		return "", err
	}
	return input + "." + enc.EncodeToString(sig), nil
}
