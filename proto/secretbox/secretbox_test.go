package secretbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func mustBox(t *testing.T, current []byte, old ...[]byte) *Box {
	t.Helper()
	b, err := New(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamper flips one bit of the ciphertext part of a sealed value.
func tamper(t *testing.T, sealed string) string {
	t.Helper()
	i := strings.LastIndexByte(sealed, ':')
	raw, err := base64.RawURLEncoding.DecodeString(sealed[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1
	return sealed[:i+1] + base64.RawURLEncoding.EncodeToString(raw)
}

func TestOpen(t *testing.T) {
	t.Parallel()
	const secret, ad = "whsec_abc", "pushgo_devices/dev1/webhook_secret"
	a, b := key(1), key(2)
	sealedA, err := mustBox(t, a).Seal(secret, ad)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		box     *Box
		value   string
		ad      string
		want    string
		wantErr error
	}{
		{name: "round trip", box: mustBox(t, a), value: sealedA, ad: ad, want: secret},
		{name: "wrong key", box: mustBox(t, b), value: sealedA, ad: ad, wantErr: ErrUnknownKey},
		{name: "tampered ciphertext", box: mustBox(t, a), value: tamper(t, sealedA), ad: ad, wantErr: ErrOpen},
		{name: "key id swapped to a known key", box: mustBox(t, b, a), value: strings.Replace(sealedA, KeyID(a), KeyID(b), 1), ad: ad, wantErr: ErrOpen},
		{name: "wrong additional data", box: mustBox(t, a), value: sealedA, ad: "pushgo_devices/dev2/webhook_secret", wantErr: ErrOpen},
		{name: "clear legacy value", box: mustBox(t, a), value: secret, ad: ad, want: secret},
		{name: "clear value without a key", box: nil, value: secret, ad: ad, want: secret},
		{name: "sealed value without a key", box: nil, value: sealedA, ad: ad, wantErr: ErrNoKey},
		{name: "rotation: old key still opens", box: mustBox(t, b, a), value: sealedA, ad: ad, want: secret},
		{name: "truncated", box: mustBox(t, a), value: sealedA[:len(Prefix)+12], ad: ad, wantErr: ErrOpen},
		{name: "no key id separator", box: mustBox(t, a), value: Prefix + "xyz", ad: ad, wantErr: ErrOpen},
		{name: "bad base64", box: mustBox(t, a), value: Prefix + KeyID(a) + ":!!!", ad: ad, wantErr: ErrOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.box.Open(tt.value, tt.ad)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open() error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("Open() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSeal(t *testing.T) {
	t.Parallel()
	a := key(1)
	box := mustBox(t, a)
	s1, err := box.Seal("whsec_x", "ad")
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := box.Seal("whsec_x", "ad")
	if !strings.HasPrefix(s1, Prefix+KeyID(a)+":") || !IsSealed(s1) {
		t.Fatalf("Seal() = %q, want %s%s:…", s1, Prefix, KeyID(a))
	}
	if s1 == s2 {
		t.Fatal("two seals of one secret are equal: the nonce is not random")
	}
	if strings.Contains(s1, "whsec_x") {
		t.Fatalf("Seal() = %q shows the secret", s1)
	}
	if got, _ := box.Seal("", "ad"); got != "" {
		t.Fatalf("Seal(\"\") = %q, want empty", got)
	}
	var none *Box
	if got, _ := none.Seal("whsec_x", "ad"); got != "whsec_x" {
		t.Fatalf("nil box Seal() = %q, want the clear secret", got)
	}
}

func TestKeyID(t *testing.T) {
	t.Parallel()
	// SHA-256 of 32 zero bytes starts 66687aad.
	if got := KeyID(make([]byte, KeySize)); got != "66687aad" {
		t.Fatalf("KeyID(zeros) = %q, want 66687aad", got)
	}
}

func TestNeedsReseal(t *testing.T) {
	t.Parallel()
	a, b, c := key(1), key(2), key(3)
	sealedA, _ := mustBox(t, a).Seal("s", "ad")
	sealedB, _ := mustBox(t, b).Seal("s", "ad")
	sealedC, _ := mustBox(t, c).Seal("s", "ad")
	box := mustBox(t, b, a)
	tests := []struct {
		name  string
		box   *Box
		value string
		want  bool
	}{
		{"clear", box, "whsec_s", true},
		{"empty", box, "", false},
		{"old key", box, sealedA, true},
		{"current key", box, sealedB, false},
		{"unknown key", box, sealedC, false},
		{"no box", nil, "whsec_s", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.box.NeedsReseal(tt.value); got != tt.want {
				t.Fatalf("NeedsReseal(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	good := base64.StdEncoding.EncodeToString(key(7))
	tests := []struct {
		name    string
		data    string
		wantErr bool
	}{
		{"one line", good + "\n", false},
		{"no newline", good, false},
		{"url alphabet rejected", base64.RawURLEncoding.EncodeToString(key(0xfb)), true},
		{"short", base64.StdEncoding.EncodeToString(key(7)[:16]), true},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := ParseKey([]byte(tt.data))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseKey(%q) error = %v, want error %v", tt.data, err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(k, key(7)) {
				t.Fatalf("ParseKey() = %x", k)
			}
		})
	}
}

func TestGenerateAndLoad(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "secrets.key")
	box, created, err := LoadOrGenerate(path, nil)
	if err != nil || !created {
		t.Fatalf("LoadOrGenerate() = %v, created %v", err, created)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Fatalf("%s: mode %v, %v; want %v", p, fi.Mode(), err, want)
		}
	}
	data, _ := os.ReadFile(path)
	if lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"); len(lines) != 1 {
		t.Fatalf("key file has %d lines", len(lines))
	}
	k, err := ParseKey(data)
	if err != nil || box.CurrentKeyID() != KeyID(k) {
		t.Fatalf("key file %q: %v; box key id %s", data, err, box.CurrentKeyID())
	}
	sealed, _ := box.Seal("whsec_x", "ad")

	// A second start loads the same key.
	again, created, err := LoadOrGenerate(path, nil)
	if err != nil || created {
		t.Fatalf("second LoadOrGenerate() = %v, created %v", err, created)
	}
	if got, err := again.Open(sealed, "ad"); err != nil || got != "whsec_x" {
		t.Fatalf("reloaded Open() = %q, %v", got, err)
	}
	if err := GenerateKeyFile(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("GenerateKeyFile over an existing key = %v, want ErrExist", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("keys dir holds %d files, want the key alone", len(entries))
	}

	// Rotation: a new current key, the first one kept for reading.
	newPath := filepath.Join(dir, "secrets-2.key")
	if err := GenerateKeyFile(newPath); err != nil {
		t.Fatal(err)
	}
	rotated, err := Load(newPath, []string{path})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(sealed, "ad"); err != nil || got != "whsec_x" || !rotated.NeedsReseal(sealed) {
		t.Fatalf("rotated Open() = %q, %v; NeedsReseal %v", got, err, rotated.NeedsReseal(sealed))
	}
	if _, err := Load(filepath.Join(dir, "missing.key"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want ErrNotExist", err)
	}
}
