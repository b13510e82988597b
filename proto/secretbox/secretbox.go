// Package secretbox seals secrets kept at rest (DESIGN.md §9.3): webhook secrets in the device
// records of KV pushgo_devices today, provider credentials later. Ingest seals what it writes;
// dispatch opens what it reads to sign webhooks.
//
// A sealed value is the string
//
//	pgs1:<key id>:<base64url, unpadded, of nonce (12 bytes) | AES-256-GCM ciphertext and tag>
//
// where the key id is the first 8 hex characters of SHA-256 of the 32-byte key. The additional
// data given to Seal and Open binds the ciphertext to its record (for a webhook secret,
// webhook.SecretBinding of the device key), so a sealed value copied into another record does
// not open. A value without the "pgs1:" prefix is a clear secret written by older code: Open
// returns it as it is, and NeedsReseal tells the writer to seal it.
//
// Keys rotate: a Box seals with its current key and opens with the current key or any of its
// old ones, chosen by the key id in the value. A key file holds one line, the 32-byte key in
// standard base64, and has mode 0600 (GenerateKeyFile writes one; other tools may too).
//
// A nil *Box is a gateway without a key: Seal returns the secret in clear, Open returns clear
// values and refuses sealed ones with ErrNoKey. A Box is immutable and safe for concurrent use.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Prefix starts every sealed value; the digit is the format's version.
const Prefix = "pgs1:"

// KeySize is the key length in bytes (AES-256).
const KeySize = 32

const nonceSize = 12

var (
	// ErrNoKey is returned by Open for a sealed value when the box has no key at all.
	ErrNoKey = errors.New("secretbox: sealed secret but no secrets key configured")
	// ErrUnknownKey is returned by Open for a value sealed with a key the box does not hold
	// (neither the current key nor an old one).
	ErrUnknownKey = errors.New("secretbox: sealed with an unknown key")
	// ErrOpen is returned by Open for a value that is malformed, tampered with, or bound to
	// other additional data (copied from another record).
	ErrOpen = errors.New("secretbox: sealed secret does not open")
)

// Box seals with one current key and opens with it or with old keys.
type Box struct {
	current string                 // key id
	aeads   map[string]cipher.AEAD // by key id
}

// New returns a box sealing with current and also opening values sealed with old keys.
func New(current []byte, old ...[]byte) (*Box, error) {
	b := &Box{aeads: map[string]cipher.AEAD{}}
	for i, k := range append([][]byte{current}, old...) {
		if len(k) != KeySize {
			return nil, fmt.Errorf("secretbox: key is %d bytes, want %d", len(k), KeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("secretbox: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secretbox: %w", err)
		}
		id := KeyID(k)
		if i == 0 {
			b.current = id
		}
		b.aeads[id] = aead
	}
	return b, nil
}

// KeyID is the first 8 hex characters of SHA-256 of key.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// CurrentKeyID is the id of the key new values are sealed with ("" for a nil box).
func (b *Box) CurrentKeyID() string {
	if b == nil {
		return ""
	}
	return b.current
}

// IsSealed reports whether v has the sealed form's prefix (it may still fail to open).
func IsSealed(v string) bool { return strings.HasPrefix(v, Prefix) }

// Seal encrypts secret bound to ad. An empty secret stays empty, and a nil box returns secret
// in clear.
func (b *Box) Seal(secret, ad string) (string, error) {
	if b == nil || secret == "" {
		return secret, nil
	}
	aead := b.aeads[b.current]
	buf := make([]byte, nonceSize, nonceSize+len(secret)+aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("secretbox: nonce: %w", err)
	}
	buf = aead.Seal(buf, buf[:nonceSize], []byte(secret), []byte(ad))
	return Prefix + b.current + ":" + base64.RawURLEncoding.EncodeToString(buf), nil
}

// Open returns the secret of v, which was sealed bound to ad, or v itself when it is a clear
// value (no prefix). It fails with ErrNoKey, ErrUnknownKey or ErrOpen; never use a value it
// refused.
func (b *Box) Open(v, ad string) (string, error) {
	rest, ok := strings.CutPrefix(v, Prefix)
	if !ok {
		return v, nil
	}
	if b == nil {
		return "", ErrNoKey
	}
	id, enc, ok := strings.Cut(rest, ":")
	if !ok {
		return "", ErrOpen
	}
	aead, ok := b.aeads[id]
	if !ok {
		return "", fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(raw) < nonceSize+aead.Overhead() {
		return "", ErrOpen
	}
	plain, err := aead.Open(nil, raw[:nonceSize], raw[nonceSize:], []byte(ad))
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}

// NeedsReseal reports whether a writer holding b should seal v again: v is a clear secret, or
// was sealed with an old key. It is false for a nil box, an empty value, and a value sealed
// with a key b does not know (which the writer cannot open).
func (b *Box) NeedsReseal(v string) bool {
	if b == nil || v == "" {
		return false
	}
	rest, ok := strings.CutPrefix(v, Prefix)
	if !ok {
		return true
	}
	id, _, _ := strings.Cut(rest, ":")
	_, known := b.aeads[id]
	return known && id != b.current
}

// ParseKey decodes a key file's contents: one line, 32 bytes in standard base64.
func ParseKey(data []byte) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("secretbox: key file is not standard base64: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: key file holds %d bytes, want %d", len(key), KeySize)
	}
	return key, nil
}

// ReadKeyFile reads and parses a key file.
func ReadKeyFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	key, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// Load returns a box sealing with the key in current and opening with it and the keys in old.
func Load(current string, old []string) (*Box, error) {
	cur, err := ReadKeyFile(current)
	if err != nil {
		return nil, err
	}
	var olds [][]byte
	for _, p := range old {
		k, err := ReadKeyFile(p)
		if err != nil {
			return nil, err
		}
		olds = append(olds, k)
	}
	return New(cur, olds...)
}

// LoadOrGenerate is Load, first generating the current key file when it does not exist.
// created tells whether it did.
func LoadOrGenerate(current string, old []string) (box *Box, created bool, err error) {
	if _, err := os.Stat(current); errors.Is(err, os.ErrNotExist) {
		if err := GenerateKeyFile(current); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, false, err
		} else if err == nil {
			created = true
		}
	}
	box, err = Load(current, old)
	return box, created, err
}

// GenerateKeyFile writes a new random key to path (mode 0600), creating its directory with
// mode 0700 when missing. It never overwrites: an existing file is an error wrapping
// os.ErrExist. The key is written to a temporary file and linked into place, so a crash
// leaves no half-written key file and two processes racing get the same key.
func GenerateKeyFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secretbox: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("secretbox: %w", err)
	}
	f, err := os.CreateTemp(dir, ".secrets-key-*") // mode 0600
	if err != nil {
		return fmt.Errorf("secretbox: %w", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("secretbox: write %s: %w", path, err)
	}
	if err := os.Link(f.Name(), path); err != nil {
		return fmt.Errorf("secretbox: %w", err)
	}
	return nil
}
