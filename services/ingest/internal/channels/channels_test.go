package channels

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/attempts"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
	"pushgo.dev/gateway/services/ingest/internal/createlimit"
	"pushgo.dev/gateway/services/ingest/internal/hashpool"
	"pushgo.dev/gateway/services/ingest/internal/ratelimit"
)

func TestMain(m *testing.M) {
	// The tests are about caching, not hash cost: cheap parameters keep -race runs short.
	// Hashes record their parameters, so verification is the same code either way.
	argonParams.time, argonParams.memory = 1, 64
	os.Exit(m.Run())
}

func newStore(t *testing.T) (*Store, *atomic.Int32) {
	t.Helper()
	return newGuardedStore(t, Guards{})
}

func newGuardedStore(t *testing.T, g Guards) (*Store, *atomic.Int32) {
	t.Helper()
	_, _, js := bustest.Provisioned(t)
	s, err := New(t.Context(), js, time.Second, slog.New(slog.DiscardHandler), g)
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

func from(t *testing.T, ip string) context.Context {
	return clientaddr.NewContext(t.Context(), clientaddr.Addr{IP: netip.MustParseAddr(ip)})
}

// TestParallelFirstRequestsDoNotLockOut: a client whose first requests to a channel arrive in
// parallel with the right password shares one verification, and so spends one check of its
// budget, not one per request (the fan-out benchmark, 16 subscribes at once, locked itself out).
func TestParallelFirstRequestsDoNotLockOut(t *testing.T) {
	t.Parallel()
	s, calls := newGuardedStore(t, Guards{Attempts: attempts.New(ratelimit.NewLocal(ratelimit.Options{}), 2, nil), Hashes: hashpool.New(2, 0)})
	rec, err := s.Create(t.Context(), "c", "secret-123")
	if err != nil {
		t.Fatal(err)
	}
	// A hash as slow as argon2id on a loaded machine, so that all requests arrive while it runs.
	verify := s.verify
	s.verify = func(hash, password string) (bool, error) {
		<-time.After(200 * time.Millisecond)
		return verify(hash, password)
	}
	ctx := from(t, "203.0.113.5")
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := s.Authorize(ctx, rec.GetChannelId(), "secret-123")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a parallel first request with the right password: %v", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d verifications, want 1 shared", n)
	}
}

func TestGuessingIsThrottledButTheKnownPasswordWorks(t *testing.T) {
	t.Parallel()
	s, calls := newGuardedStore(t, Guards{Attempts: attempts.New(ratelimit.NewLocal(ratelimit.Options{}), 3, nil), Hashes: hashpool.New(2, 0)})
	rec, err := s.Create(t.Context(), "c", "secret-123")
	if err != nil {
		t.Fatal(err)
	}
	id := rec.GetChannelId()
	if _, err := s.Authorize(from(t, "203.0.113.5"), id, "secret-123"); err != nil {
		t.Fatal(err)
	}
	attacker := from(t, "198.51.100.1")
	for i := range 3 {
		if _, err := s.Authorize(attacker, id, fmt.Sprint("guess-", i)); code(err) != "password_mismatch" {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	hashed := calls.Load()
	_, err = s.Authorize(attacker, id, "guess-3")
	if e, ok := apierr.As(err); !ok || e.Code != "too_many_attempts" || e.RetryAfter != 60 {
		t.Fatalf("4th guess: %v", err)
	}
	if calls.Load() != hashed {
		t.Fatal("a locked-out guess was hashed")
	}
	// The proven password passes from the locked-out address and from anywhere else.
	for _, ctx := range []context.Context{attacker, from(t, "203.0.113.5"), from(t, "192.0.2.9")} {
		if _, err := s.Authorize(ctx, id, "secret-123"); err != nil {
			t.Fatalf("known password during the attack: %v", err)
		}
	}
	// Another address still gets its own answers.
	if _, err := s.Authorize(from(t, "198.51.100.2"), id, "guess-4"); code(err) != "password_mismatch" {
		t.Fatalf("another address: %v", err)
	}
	// Unknown channels are never counted: no oracle, no lockout.
	for range 10 {
		if _, err := s.Authorize(attacker, "06J0FZG1Y8XGG14VTQ4Y3G10MR", "x-password"); code(err) != "channel_not_found" {
			t.Fatalf("unknown channel: %v", err)
		}
	}
}

func TestBusyWhenEveryHashSlotIsTaken(t *testing.T) {
	t.Parallel()
	s, _ := newGuardedStore(t, Guards{Hashes: hashpool.New(1, 50*time.Millisecond)})
	rec, err := s.Create(t.Context(), "c", "secret-123")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	s.verify = func(hash, password string) (bool, error) {
		if password == "slow-password" {
			close(entered)
			<-release
		}
		return verifyPassword(hash, password)
	}
	held := make(chan error, 1)
	go func() {
		_, err := s.Authorize(t.Context(), rec.GetChannelId(), "slow-password")
		held <- err
	}()
	<-entered
	for name, call := range map[string]func() error{
		"verify": func() error { _, err := s.Authorize(t.Context(), rec.GetChannelId(), "secret-123"); return err },
		"create": func() error { _, err := s.Create(t.Context(), "d", "secret-123"); return err },
	} {
		if e, ok := apierr.As(call()); !ok || e.Code != "busy" || e.RetryAfter != 1 {
			t.Fatalf("%s with the only slot taken: %v", name, e)
		}
	}
	close(release)
	if err := <-held; code(err) != "password_mismatch" {
		t.Fatalf("the slow check: %v", err)
	}
	if _, err := s.Authorize(t.Context(), rec.GetChannelId(), "secret-123"); err != nil {
		t.Fatalf("after the slot came free: %v", err)
	}
}

func TestCreatesPerAddress(t *testing.T) {
	t.Parallel()
	s, _ := newGuardedStore(t, Guards{Creates: createlimit.New(ratelimit.NewLocal(ratelimit.Options{}), 2)})
	a := from(t, "203.0.113.1")
	for range 2 {
		if _, err := s.Create(a, "c", "secret-123"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(a, "c", "secret-123"); code(err) != "rate_limited" {
		t.Fatalf("3rd create: %v", err)
	}
	if _, err := s.Create(from(t, "203.0.113.2"), "c", "secret-123"); err != nil {
		t.Fatalf("another address: %v", err)
	}
}
