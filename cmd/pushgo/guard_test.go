package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"pushgo.dev/gateway/proto/bus/bustest"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest"
)

// The attacks of issue 10 part 2, each through HTTP as a hostile client would make them.

// from posts body as the client at ip (the test gateways trust 127.0.0.1 as a proxy).
func (g *gateway) from(t testing.TB, ip, path string, body any) response {
	t.Helper()
	return g.request(t, http.MethodPost, path, "application/json", mustJSON(t, body), map[string]string{"X-Forwarded-For": ip})
}

// goMemory is the memory the Go runtime holds from the OS (mapped and not released): what the
// process's RSS is made of, without the race detector's shadow memory.
func goMemory() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}

// vmRSS is the process's resident set from /proc/self/status (0 where there is none).
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestConcurrentWrongPasswordsKeepMemoryBounded sends 96 concurrent wrong passwords, twice
// each, to one channel at the default --hash-concurrency. Before the hashing pool every one
// ran an argon2id of 19 MiB at once (64 took RSS from 274 MB to 2 GB); now the memory the Go
// runtime holds — and RSS, when the race detector's shadow memory does not inflate it — rises
// by less than 300 MB, every excess request is answered 503 busy with Retry-After or 403, and
// another channel keeps answering meanwhile. Not parallel: other tests' gateways would blur
// the memory reading.
func TestConcurrentWrongPasswordsKeepMemoryBounded(t *testing.T) {
	g := startGateway(t, gatewayOpts{hashConcurrency: ingest.DefaultHashConcurrency})
	victim, other := g.channel(t), g.channel(t)
	g.mustOK(t, "/event/list", obj{"channel_id": other, "password": "secret-123"}) // proven, so cached

	runtime.GC()
	baseGo, baseRSS := goMemory(), vmRSS()
	var peakGo, peakRSS atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if m := goMemory(); m > peakGo.Load() {
				peakGo.Store(m)
			}
			if m := vmRSS(); m > peakRSS.Load() {
				peakRSS.Store(m)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	// The other channel keeps answering during the attack.
	attackDone := make(chan struct{})
	var otherOK, otherSlowest atomic.Int64
	otherDone := make(chan string, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-attackDone:
				otherDone <- ""
				return
			default:
			}
			start := time.Now()
			r := g.post(t, "/event/list", obj{"channel_id": other, "password": "secret-123"})
			took := time.Since(start)
			if r.status != http.StatusOK {
				otherDone <- fmt.Sprintf("the other channel's request %d: %d %s", i, r.status, r.raw)
				return
			}
			otherOK.Add(1)
			if took.Milliseconds() > otherSlowest.Load() {
				otherSlowest.Store(took.Milliseconds())
			}
		}
	}()

	const attackers, rounds = 96, 2
	var mismatch, busy atomic.Int32
	bad := make(chan string, attackers*rounds)
	var wg sync.WaitGroup
	for i := range attackers {
		wg.Go(func() {
			for j := range rounds {
				r := g.post(t, "/event/list", obj{"channel_id": victim, "password": fmt.Sprintf("guess-%d-%d", i, j)})
				countWrongPassword(r, &mismatch, &busy, bad)
			}
		})
	}
	wg.Wait()
	close(attackDone)
	if msg := <-otherDone; msg != "" {
		t.Fatal(msg)
	}
	close(stop)
	<-sampled
	close(bad)
	const mb = 1 << 20
	riseGo, riseRSS := int64(peakGo.Load()-baseGo)/mb, (int64(peakRSS.Load())-int64(baseRSS))/mb
	t.Logf("%d wrong passwords: %d answered 403, %d busy, %d otherwise; Go memory +%d MB, RSS +%d MB; the other channel answered %d times, slowest %d ms",
		attackers*rounds, mismatch.Load(), busy.Load(), len(bad), riseGo, riseRSS, otherOK.Load(), otherSlowest.Load())
	if riseGo >= 300 {
		t.Errorf("the Go runtime's memory rose by %d MB under %d concurrent wrong passwords, want < 300 MB", riseGo, attackers)
	}
	if !raceEnabled && riseRSS >= 300 {
		t.Errorf("RSS rose by %d MB under %d concurrent wrong passwords, want < 300 MB", riseRSS, attackers)
	}
	for msg := range bad {
		t.Fatalf("a wrong password answered %s", msg)
	}
	if otherOK.Load() == 0 {
		t.Fatal("the other channel was never answered during the attack")
	}
}

// TestBusyWhenHashingIsSaturated: with one hashing slot, 128 concurrent distinct wrong
// passwords cannot all be hashed within the 1 s queue; the rest are answered 503 busy with
// Retry-After: 1, none waits much longer than that, and nothing else is answered.
func TestBusyWhenHashingIsSaturated(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{hashConcurrency: 1})
	ch := g.channel(t)
	var mismatch, busy atomic.Int32
	var slowest atomic.Int64
	bad := make(chan string, 128)
	var wg sync.WaitGroup
	for i := range 128 {
		wg.Go(func() {
			start := time.Now()
			r := g.post(t, "/event/list", obj{"channel_id": ch, "password": fmt.Sprint("wrong-password-", i)})
			if took := time.Since(start).Milliseconds(); took > slowest.Load() {
				slowest.Store(took)
			}
			countWrongPassword(r, &mismatch, &busy, bad)
		})
	}
	wg.Wait()
	close(bad)
	for msg := range bad {
		t.Fatalf("a wrong password answered %s", msg)
	}
	t.Logf("128 concurrent wrong passwords, one slot: %d answered 403, %d busy, slowest %d ms", mismatch.Load(), busy.Load(), slowest.Load())
	if busy.Load() == 0 || mismatch.Load() == 0 {
		t.Fatalf("%d busy, %d hashed: want both", busy.Load(), mismatch.Load())
	}
}

// TestPasswordGuessingIsThrottled guesses from one address: after 10 wrong passwords the next
// is answered 429 too_many_attempts with Retry-After (and not hashed), while the channel's
// right password, proven before the attack, keeps working from everywhere, and another address
// still gets its own answers.
func TestPasswordGuessingIsThrottled(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{passwordFailuresPerMinute: 10, trustedProxies: "127.0.0.1/32"})
	ch := g.channel(t)
	const user, attacker, neighbour = "203.0.113.5", "198.51.100.1", "198.51.100.2"
	list := func(ip, password string) response {
		return g.from(t, ip, "/event/list", obj{"channel_id": ch, "password": password})
	}
	if r := list(user, "secret-123"); r.status != http.StatusOK {
		t.Fatalf("the user's first request: %d %s", r.status, r.raw)
	}
	// 10 guesses per minute: the budget refills one guess every 6 s, so a slow machine (each
	// guess is an argon2 hash) gets one more per 6 s the guessing takes.
	start, checked := time.Now(), 0
	for ; ; checked++ {
		r := list(attacker, fmt.Sprint("guess-number-", checked))
		if r.status == http.StatusTooManyRequests {
			break
		}
		if r.status != http.StatusForbidden || r.code() != "password_mismatch" {
			t.Fatalf("guess %d: %d %s", checked, r.status, r.raw)
		}
		if allowed := 10 + int(time.Since(start)/(6*time.Second)) + 1; checked >= min(allowed, 100) {
			t.Fatalf("%d wrong passwords checked in %s, at 10 per minute", checked+1, time.Since(start))
		}
	}
	if checked < 10 {
		t.Fatalf("locked out after %d wrong passwords, want 10", checked)
	}
	for i := range 3 {
		r := list(attacker, fmt.Sprint("guess-again-", i))
		if r.status != http.StatusTooManyRequests || r.code() != "too_many_attempts" {
			t.Fatalf("guess %d after the budget: %d %s", checked+i, r.status, r.raw)
		}
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 30 || ra > 60 {
			t.Fatalf("Retry-After %q, want about a minute", r.header.Get("Retry-After"))
		}
	}
	// The proven password: from the user, from the attacker's own address, from a third one.
	for _, ip := range []string{user, attacker, "192.0.2.33"} {
		if r := list(ip, "secret-123"); r.status != http.StatusOK {
			t.Fatalf("the right password from %s during the attack: %d %s", ip, r.status, r.raw)
		}
	}
	// Another address is not locked out: its wrong password is checked and refused as such.
	if r := list(neighbour, "neighbour-typo"); r.status != http.StatusForbidden || r.code() != "password_mismatch" {
		t.Fatalf("another address: %d %s", r.status, r.raw)
	}
	// Without X-Forwarded-For the client is the peer, 127.0.0.1: not the attacker either.
	if r := g.post(t, "/event/list", obj{"channel_id": ch, "password": "direct-typo"}); r.code() != "password_mismatch" {
		t.Fatalf("the proxy's own address: %d %s", r.status, r.raw)
	}
}

// TestCreatesLimitedPerAddress spends one address's create budget on a channel, a device and a
// subscribe by name; the next create of each kind is 429 rate_limited with Retry-After, while
// calls that create nothing, another address, and an exempt address go on.
func TestCreatesLimitedPerAddress(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{createsPerMinute: 3, trustedProxies: "127.0.0.1/32", limitExempt: "192.0.2.0/24"})
	const a, b, exempt = "203.0.113.1", "203.0.113.2", "192.0.2.7"
	ok := func(ip, path string, body obj) map[string]any {
		t.Helper()
		r := g.from(t, ip, path, body)
		if r.status != http.StatusOK {
			t.Fatalf("%s from %s: %d %s", path, ip, r.status, r.raw)
		}
		return r.data(t)
	}
	ch := ok(a, "/channel/create", obj{"channel_name": "c", "password": "secret-123"})["channel_id"].(string)
	dk := ok(a, "/device/register", obj{"platform": "web"})["device_key"].(string)
	ok(a, "/channel/subscribe", obj{"device_key": dk, "channel_name": "by-name", "password": "secret-123"})

	for _, c := range []struct {
		path string
		body obj
	}{
		{"/channel/create", obj{"channel_name": "c", "password": "secret-123"}},
		{"/device/register", obj{"platform": "web"}},
		{"/channel/subscribe", obj{"device_key": dk, "channel_name": "by-name-2", "password": "secret-123"}},
	} {
		r := g.from(t, a, c.path, c.body)
		if r.status != http.StatusTooManyRequests || r.code() != "rate_limited" {
			t.Fatalf("%s beyond the budget: %d %s", c.path, r.status, r.raw)
		}
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 20 {
			t.Fatalf("%s: Retry-After %q, want at most 20 s (3 per minute)", c.path, r.header.Get("Retry-After"))
		}
	}
	// Calls that create nothing are not counted.
	ok(a, "/device/register", obj{"platform": "web", "device_key": dk})
	ok(a, "/channel/subscribe", obj{"device_key": dk, "channel_id": ch, "password": "secret-123"})
	// Another address has its own budget; an exempt one has none.
	ok(b, "/channel/create", obj{"channel_name": "c", "password": "secret-123"})
	for range 6 {
		ok(exempt, "/channel/create", obj{"channel_name": "c", "password": "secret-123"})
	}
}

// TestGRPCPeerIsTheClientAddress: a create over the gRPC listener is counted against the TCP
// peer (127.0.0.1), the same budget as REST calls from it.
func TestGRPCPeerIsTheClientAddress(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := runIngest(t, ns.ClientURL(), ingest.Config{CreatesPerMinute: 1}, grpcLn)
	cc, err := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	chans := apiv1.NewChannelServiceClient(cc)
	eventually(t, 10*time.Second, "gRPC ready", func() bool {
		_, err = chans.Create(t.Context(), &apiv1.CreateChannelRequest{ChannelName: "g", Password: "secret-123"})
		return status.Code(err) != codes.Unavailable
	})
	if err != nil {
		t.Fatalf("first create over gRPC: %v", err)
	}
	_, err = chans.Create(t.Context(), &apiv1.CreateChannelRequest{ChannelName: "g", Password: "secret-123"})
	var reason string
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if status.Code(err) != codes.ResourceExhausted || reason != "rate_limited" {
		t.Fatalf("second create over gRPC: %v", err)
	}
	// REST from the same address shares the budget.
	if r := g.post(t, "/channel/create", obj{"channel_name": "h", "password": "secret-123"}); r.code() != "rate_limited" {
		t.Fatalf("REST create from the gRPC client's address: %d %s", r.status, r.raw)
	}
}

// countWrongPassword counts an answer to a wrong password: 403 password_mismatch, or 503 busy
// with Retry-After 1; anything else is reported on bad.
func countWrongPassword(r response, mismatch, busy *atomic.Int32, bad chan<- string) {
	switch {
	case r.status == http.StatusForbidden && r.code() == "password_mismatch":
		mismatch.Add(1)
	case r.status == http.StatusServiceUnavailable && r.code() == "busy" && r.header.Get("Retry-After") == "1":
		busy.Add(1)
	default:
		bad <- fmt.Sprintf("%d %s (Retry-After %q)", r.status, r.raw, r.header.Get("Retry-After"))
	}
}
