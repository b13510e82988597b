package logsign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Key files are PEM: the private key PKCS #8 ("PRIVATE KEY", mode 0600), the public key PKIX
// ("PUBLIC KEY"), the forms openssl reads and writes for Ed25519.

// LoadSigner reads a private log key file.
func LoadSigner(path string) (*Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("log key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("log key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("log key %s: not an Ed25519 key", path)
	}
	return NewSigner(priv), nil
}

// LoadPublicKeys reads public log key files, comma separated in list (empty: none). A private
// key file is accepted too (its public half is taken).
func LoadPublicKeys(list string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for path := range strings.SplitSeq(list, ",") {
		path = strings.TrimSpace(path)
		if path == "" {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("log public key: %w", err)
		}
		b, _ := pem.Decode(raw)
		switch {
		case b != nil && b.Type == "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("log public key %s: %w", path, err)
			}
			pub, ok := k.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("log public key %s: not an Ed25519 key", path)
			}
			keys = append(keys, pub)
		case b != nil && b.Type == "PRIVATE KEY":
			s, err := LoadSigner(path)
			if err != nil {
				return nil, err
			}
			keys = append(keys, s.Public())
		default:
			return nil, fmt.Errorf("log public key %s: not a PEM PUBLIC KEY", path)
		}
	}
	return keys, nil
}

// WriteKeyPair generates a log key pair into privPath (0600) and pubPath (0644), refusing to
// overwrite either.
func WriteKeyPair(privPath, pubPath string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pk, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		return err
	}
	return writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}), 0o644)
}

// EnsureKeyPair returns the key pair in dir (log-ed25519.pem, log-ed25519.pub.pem), generating
// it on first use (dir 0700): what pushgo serve uses when no key file is given.
func EnsureKeyPair(dir string) (privPath, pubPath string, err error) {
	privPath, pubPath = filepath.Join(dir, "log-ed25519.pem"), filepath.Join(dir, "log-ed25519.pub.pem")
	if _, err := os.Stat(privPath); err == nil {
		if _, err := os.Stat(pubPath); errors.Is(err, os.ErrNotExist) {
			s, err := LoadSigner(privPath)
			if err != nil {
				return "", "", err
			}
			pk, err := x509.MarshalPKIXPublicKey(s.Public())
			if err != nil {
				return "", "", err
			}
			return privPath, pubPath, writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}), 0o644)
		}
		return privPath, pubPath, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	return privPath, pubPath, WriteKeyPair(privPath, pubPath)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Load reads a service's log keys: the private key (keyFile, only lifecycle's; "" for none)
// and the public keys that verify (publicKeys, comma separated; the private key's own is
// added). With neither it returns nil and nil: the log is neither signed nor checked.
func Load(keyFile, publicKeys string) (*Signer, *Verifier, error) {
	var s *Signer
	if keyFile != "" {
		var err error
		if s, err = LoadSigner(keyFile); err != nil {
			return nil, nil, err
		}
	}
	pubs, err := LoadPublicKeys(publicKeys)
	if err != nil {
		return nil, nil, err
	}
	if s != nil {
		pubs = append(pubs, s.Public())
	}
	if len(pubs) == 0 {
		return nil, nil, nil
	}
	return s, NewVerifier(pubs...), nil
}
