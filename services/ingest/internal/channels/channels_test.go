package channels

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

func TestMain(m *testing.M) {
	// The tests are about caching, not hash cost: cheap parameters keep -race runs short.
	// Hashes record their parameters, so verification is the same code either way.
	argonParams.time, argonParams.memory = 1, 64
	os.Exit(m.Run())
}

func newStore(t *testing.T) (*Store, *atomic.Int32) {
	t.Helper()
	_, _, js := bustest.Provisioned(t)
	s, err := New(t.Context(), js, time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	s.verify = func(hash, password string) (bool, error) {
		calls.Add(1)
		return verifyPassword(hash, password)
	}
	return s, &calls
}

func code(err error) string {
	if e, ok := apierr.As(err); ok {
		return e.Code
	}
	return ""
}

func TestAuthorizeCachesOnlyGoodPasswords(t *testing.T) {
	t.Parallel()
	s, calls := newStore(t)
	ctx := t.Context()
	rec, err := s.Create(ctx, "deploys", "secret-123")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.GetPasswordHash(), "secret-123") || !strings.HasPrefix(rec.GetPasswordHash(), "$argon2id$") {
		t.Fatalf("stored hash %q", rec.GetPasswordHash())
	}
	id := rec.GetChannelId()

	for range 3 {
		if _, err := s.Authorize(ctx, id, "secret-123"); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("3 good requests hashed %d times, want 1", n)
	}
	for i := range 3 {
		if _, err := s.Authorize(ctx, id, "wrong-password"); code(err) != "password_mismatch" {
			t.Fatalf("wrong password: %v", err)
		}
		if n := calls.Load(); n != int32(2+i) {
			t.Fatalf("wrong password #%d: %d hashes in all, want %d (a wrong password is never cached)", i+1, n, 2+i)
		}
	}
	// The good password still passes without a hash; a different good-looking one does not.
	if _, err := s.Authorize(ctx, id, "secret-123"); err != nil || calls.Load() != 4 {
		t.Fatalf("good password after wrong ones: %v, %d hashes", err, calls.Load())
	}
	if _, err := s.Authorize(ctx, id, "secret-1234"); code(err) != "password_mismatch" {
		t.Fatalf("a longer password: %v", err)
	}
	if _, err := s.Authorize(ctx, "06J0FZG1Y8XGG14VTQ4Y3G10MR", "secret-123"); code(err) != "channel_not_found" {
		t.Fatalf("unknown channel: %v", err)
	}
}

func TestConcurrentFirstRequestsShareOneHash(t *testing.T) {
	t.Parallel()
	s, calls := newStore(t)
	rec, err := s.Create(t.Context(), "c", "secret-123")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if _, err := s.Authorize(t.Context(), rec.GetChannelId(), "secret-123"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := calls.Load(); n < 1 || n > 3 {
		t.Fatalf("16 concurrent first requests hashed %d times", n)
	}
}

func TestChannelID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		id := newChannelID()
		if len(id) != 26 || !strings.ContainsRune("048CGMRW", rune(id[25])) || strings.ContainsAny(id, "ILOU") {
			t.Fatalf("bad channel id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestPasswordHash(t *testing.T) {
	t.Parallel()
	h := hashPassword("pässwörd-1")
	if ok, err := verifyPassword(h, "pässwörd-1"); !ok || err != nil {
		t.Fatalf("verify own hash: %v %v", ok, err)
	}
	if ok, _ := verifyPassword(h, "pässwörd-2"); ok {
		t.Fatal("a wrong password verified")
	}
	if h == hashPassword("pässwörd-1") {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	if _, err := verifyPassword("$2a$10$bcrypt", "x"); err == nil {
		t.Fatal("a foreign hash format verified without error")
	}
}
