package logsign_test

import (
	"testing"

	"pushgo.dev/gateway/proto/logsign"
)

// The per-op CPU of the signed log: lifecycle seals each entry once; each reader opens it.
func BenchmarkSeal(b *testing.B) {
	s := newSigner(b)
	prev := &logsign.Entry{Seq: 1, Data: make([]byte, 600)}
	for b.Loop() {
		if _, err := s.Seal(entry(2, true, "running"), prev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s := newSigner(b)
	data, err := s.Seal(entry(1, true, "running"), nil)
	if err != nil {
		b.Fatal(err)
	}
	v := logsign.NewVerifier(s.Public())
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Open("s", 1, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode is what a reader did before: decoding alone.
func BenchmarkDecode(b *testing.B) {
	s := newSigner(b)
	data, err := s.Seal(entry(1, true, "running"), nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := (*logsign.Verifier)(nil).Open("s", 1, data); err != nil {
			b.Fatal(err)
		}
	}
}
