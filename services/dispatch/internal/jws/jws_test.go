package jws

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestSign(t *testing.T) {
	t.Parallel()
	var signed []byte
	tok, err := Sign(map[string]string{"alg": "X"}, map[string]int{"iat": 1}, func(digest []byte) ([]byte, error) {
		signed = digest
		return []byte{0xfb, 0xff}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	want := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	c, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if len(parts) != 3 || string(h) != `{"alg":"X"}` || string(c) != `{"iat":1}` || parts[2] != "-_8" || !bytes.Equal(signed, want[:]) {
		t.Fatalf("Sign = %q (signed %x)", tok, signed)
	}
	if _, err := Sign(1, 2, func([]byte) ([]byte, error) { return nil, errors.New("no key") }); err == nil {
		t.Fatal("a signing error was dropped")
	}
}
