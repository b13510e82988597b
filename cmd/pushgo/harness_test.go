package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/proto/fakes/apnsfake"
	"pushgo.dev/gateway/proto/fakes/fcmfake"
	"pushgo.dev/gateway/services/dispatch"
)

// The end-to-end tests run the real services in process against a real embedded JetStream
// server and talk to them only through HTTP (and gRPC), as a client would.

// seenCodes records every error_code any test received, to prove that every code of the
// README's table is reachable (see TestMain).
var seenCodes sync.Map

// coveredElsewhere are the codes an end-to-end test cannot provoke without breaking the
// gateway on purpose; the named unit tests cover them.
var coveredElsewhere = map[string]string{
	"internal_error":           "services/ingest/internal/httpapi TestPanicIsInternalError",
	"dispatch_partial_failure": "services/ingest/internal/httpapi TestPartialFailureEnvelope (no delivery targets exist yet)",
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && !testing.Short() {
		if missing := missingCodes(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "error codes of README.md that no end-to-end test received: %v\n", missing)
			code = 1
		}
		if undeclared := undeclaredRouteCodes(); len(undeclared) > 0 {
			fmt.Fprintf(os.Stderr, "error codes end-to-end tests received that the OpenAPI spec does not list for their route: %v\n", undeclared)
			code = 1
		}
	}
	os.Exit(code)
}

// readmeCodes parses the error-code table of README.md (rows "| `code` | status | ... |").
func readmeCodes(tb testing.TB) map[string]int {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		if tb != nil {
			tb.Fatal(err)
		}
		return nil
	}
	codes := map[string]int{}
	re := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (\\d{3}) \\|")
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		var status int
		fmt.Sscan(m[2], &status)
		codes[m[1]] = status
	}
	return codes
}

// seenRouteCodes records each (route, error_code) a test received: every one must be among the
// route's error codes in the OpenAPI spec (checkSpecCodes).
var seenRouteCodes sync.Map

type routeCode struct{ route, code string }

// specFile is the OpenAPI spec the gateway serves at /openapi.json.
const specFile = "../../services/ingest/internal/apidoc/openapi.json"

// undeclaredRouteCodes returns the (route, error_code) pairs tests received that the spec does
// not list among the route's error answers; routes the spec does not describe (unknown paths,
// the /v1 aliases of PushGo's client) are left out. With PUSHGO_ROUTE_CODES set, every pair
// received is also written to that file.
func undeclaredRouteCodes() []string {
	var seen []string
	seenRouteCodes.Range(func(k, _ any) bool {
		rc := k.(routeCode)
		seen = append(seen, rc.route+" "+rc.code)
		return true
	})
	slices.Sort(seen)
	if out := os.Getenv("PUSHGO_ROUTE_CODES"); out != "" {
		_ = os.WriteFile(out, []byte(strings.Join(seen, "\n")+"\n"), 0o644)
	}
	b, err := os.ReadFile(specFile)
	if err != nil {
		return []string{err.Error()}
	}
	var spec struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Codes []string `json:"x-error-codes"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return []string{err.Error()}
	}
	var undeclared []string
	for _, pair := range seen {
		route, code, _ := strings.Cut(pair, " ")
		ops, ok := spec.Paths[route]
		if !ok {
			continue
		}
		found := false
		for _, op := range ops {
			for _, r := range op.Responses {
				found = found || slices.Contains(r.Codes, code)
			}
		}
		if !found {
			undeclared = append(undeclared, pair)
		}
	}
	return undeclared
}

func missingCodes() []string {
	var missing []string
	for code := range readmeCodes(nil) {
		if _, ok := seenCodes.Load(code); ok {
			continue
		}
		if _, ok := coveredElsewhere[code]; ok {
			continue
		}
		missing = append(missing, code)
	}
	sort.Strings(missing)
	return missing
}

var quiet = slog.New(slog.DiscardHandler)

// gatewayOpts tunes a test gateway.
type gatewayOpts struct {
	token             string
	dispatchWait      time.Duration
	retryBudget       time.Duration
	idempotencyWindow time.Duration
	logger            *slog.Logger
	allowPrivate      bool
	inboxPerDevice    int64
	keepAlive         time.Duration
	bodyTimeout       time.Duration
	deliveryBudget    time.Duration
	// The op rate limit and subscriber quota of DESIGN.md §8.2 are off (0) unless a test sets
	// them: tests make many ops per channel in a burst.
	channelOpsPerSecond   float64
	subscribersPerChannel int
	// Hostile-client limits: off (0) unless a test asks, since the tests create many channels
	// and devices from 127.0.0.1 and hash many passwords at once.
	hashConcurrency, passwordFailuresPerMinute, createsPerMinute int
	trustedProxies, limitExempt                                  string
	// adminToken makes the gateway hosted; channelsPerTenant and devicesPerTenant are its
	// quotas (0: off, unlike the flags' defaults).
	adminToken        string
	channelsPerTenant int
	devicesPerTenant  int
	// streamsPerDevice, streamsPerTenant, streamWriteTimeout: the stream limits (0: off, and
	// the default write timeout).
	streamsPerDevice, streamsPerTenant int
	streamWriteTimeout                 time.Duration
	// retryHold is --retry-hold (0: off, unlike the flag's default: tests come straight back
	// after a 429 on purpose).
	retryHold time.Duration
	// channelConcurrency is --channel-concurrency (0: the flag's default; negative: off).
	channelConcurrency int
	// ns, when set, is the JetStream server to run on (a fresh one when nil); logKeyDir holds
	// the log key pair (a temporary dir when empty); unsigned runs without log keys, as builds
	// before the signed log did.
	ns        *server.Server
	logKeyDir string
	unsigned  bool
	// partitions is --partitions (0: $PUSHGO_TEST_PARTITIONS, which `make test` sets to run
	// the suite once more on a partitioned store, else 1).
	partitions int
	// apns and fcm, when set, are the providers the gateway sends to (their keys and URLs).
	apns *apnsfake.Server
	fcm  *fcmfake.Server
	// webhookRetrySchedule is --webhook-retry-schedule; empty is "none" (unlike the flag's
	// default), so that no scheduled attempt reaches the receivers of other tests' webhooks.
	webhookRetrySchedule string
	// corsOrigins is --cors-origins.
	corsOrigins string
	// dataDir, when set, is the gateway's data directory (its log and secrets keys), so that a
	// gateway started again on the same broker reads what the first one sealed.
	dataDir string
}

// testPartitions is the partition count of gateways that do not name one.
func testPartitions(t testing.TB) int {
	v := os.Getenv("PUSHGO_TEST_PARTITIONS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > bus.MaxPartitions {
		t.Fatalf("PUSHGO_TEST_PARTITIONS=%q", v)
	}
	return n
}

// layout is the gateway's stream layout.
func (g *gateway) layout() bus.Layout { return g.cfg.bus.Layout() }

type gateway struct {
	url string
	ns  *server.Server
	cfg config
	// stop stops the gateway before the test ends.
	stop func()

	mu    sync.Mutex
	conns map[string]*nats.Conn // by service, for leak checks
}

// startGateway runs ingest, lifecycle and dispatch against a fresh
// embedded JetStream server until the test ends. Each service connects as its own user of the
// permission table (bus.Table), so every end-to-end test checks that the table allows what the
// services do: a permission violation reported to any of them fails the test. The test's own
// connections without credentials have full access (bustest.RunSecured).
func startGateway(t *testing.T, o gatewayOpts) *gateway {
	t.Helper()
	ns := o.ns
	if ns == nil {
		ns = bustest.RunSecured(t)
	}
	cfg, err := parseConfig([]string{"serve"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ingest.Token = o.token
	cfg.ingest.AdminToken = o.adminToken
	cfg.ingest.ChannelsPerTenant, cfg.ingest.DevicesPerTenant = o.channelsPerTenant, o.devicesPerTenant
	cfg.ingest.GRPCAddr = ""
	cfg.ingest.ChannelOpsPerSecond, cfg.ingest.TenantOpsPerSecond = o.channelOpsPerSecond, 0
	cfg.ingest.SubscribersPerChannel = o.subscribersPerChannel
	if o.dispatchWait > 0 {
		cfg.ingest.DispatchWait = o.dispatchWait
		cfg.dispatch.Budget = o.dispatchWait * 4 / 5
	}
	if o.deliveryBudget > 0 {
		cfg.dispatch.Budget = o.deliveryBudget
	}
	cfg.ingest.WebhookAllowPrivate, cfg.dispatch.WebhookAllowPrivate = o.allowPrivate, o.allowPrivate
	cfg.ingest.StreamKeepAlive = o.keepAlive
	if o.bodyTimeout > 0 {
		cfg.ingest.BodyTimeout = o.bodyTimeout
	}
	cfg.ingest.StreamsPerDevice, cfg.ingest.StreamsPerTenant = o.streamsPerDevice, o.streamsPerTenant
	cfg.ingest.StreamWriteTimeout = o.streamWriteTimeout
	cfg.ingest.RetryBudget = time.Second
	if o.retryBudget > 0 {
		cfg.ingest.RetryBudget = o.retryBudget
	}
	if o.idempotencyWindow > 0 {
		cfg.bus.IdempotencyWindow = o.idempotencyWindow
	}
	if o.inboxPerDevice > 0 {
		cfg.bus.InboxPerDevice = o.inboxPerDevice
	}
	cfg.bus.Partitions = cmp.Or(o.partitions, testPartitions(t))
	cfg.ingest.Bus, cfg.lifecycle.Bus, cfg.dispatch.Bus = cfg.bus, cfg.bus, cfg.bus
	cfg.ingest.HashConcurrency, cfg.ingest.PasswordFailuresPerMinute, cfg.ingest.CreatesPerMinute = o.hashConcurrency, o.passwordFailuresPerMinute, o.createsPerMinute
	cfg.ingest.TrustedProxies, cfg.ingest.LimitExempt = o.trustedProxies, o.limitExempt
	cfg.ingest.CORSOrigins = o.corsOrigins
	cfg.ingest.RetryHold = o.retryHold
	if o.apns != nil {
		keyFile := filepath.Join(t.TempDir(), "AuthKey.p8")
		if err := os.WriteFile(keyFile, o.apns.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.dispatch.APNs = dispatch.APNsConfig{KeyFile: keyFile, KeyID: apnsfake.KeyID, TeamID: apnsfake.TeamID,
			Topic: apnsfake.Topic, Environment: "sandbox", URL: o.apns.URL, TLS: o.apns.TLS()}
	}
	if o.fcm != nil {
		credFile := filepath.Join(t.TempDir(), "service-account.json")
		if err := os.WriteFile(credFile, o.fcm.Credentials(), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.dispatch.FCM = dispatch.FCMConfig{CredentialsFile: credFile, URL: o.fcm.URL, TLS: o.fcm.TLS()}
	}
	if o.channelConcurrency != 0 {
		cfg.ingest.ChannelConcurrency = max(o.channelConcurrency, 0)
	}
	// Secrets at rest are sealed and the log signed as by pushgo serve: keys generated in the
	// data dir.
	cfg.dataDir = cmp.Or(o.dataDir, t.TempDir())
	cfg.dispatch.WebhookRetrySchedule = cmp.Or(o.webhookRetrySchedule, "none")
	if !o.unsigned {
		if err := cfg.ensureLogKeys(cmp.Or(o.logKeyDir, filepath.Join(cfg.dataDir, "keys"))); err != nil {
			t.Fatal(err)
		}
	}
	if cfg, err = withSecrets(cfg, quiet); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{url: "http://" + ln.Addr().String(), ns: ns, cfg: cfg, conns: map[string]*nats.Conn{}}
	log := quiet
	if o.logger != nil {
		log = o.logger
	}
	ctx, cancel := context.WithCancel(t.Context())
	violations := &bustest.Violations{}
	t.Cleanup(func() {
		for _, v := range violations.All() {
			t.Errorf("a service did what the permission table does not allow: %s", v)
		}
	})
	done := make(chan error, 1)
	go func() {
		done <- startAll(ctx, cfg, log, ln, func(svc string) (*nats.Conn, error) {
			nc, err := nats.Connect(ns.ClientURL(), bustest.RoleOptions(bus.Role(svc), violations)...)
			g.mu.Lock()
			g.conns[svc] = nc
			g.mu.Unlock()
			return nc, err
		})
	}()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("gateway stopped with %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("gateway did not stop within 15s")
			}
		})
	}
	t.Cleanup(g.stop)
	g.waitReady(t)
	return g
}

// jetStream is a JetStream client of the test's broker, on a connection of its own that is
// closed when the test ends.
func (g *gateway) jetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(g.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func (g *gateway) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, 15*time.Second, "/readyz", func() bool {
		resp, err := http.Get(g.url + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// eventually polls cond every 20ms until it holds, failing the test after d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// envelope is every JSON response of the API.
type envelope struct {
	Success   bool            `json:"success"`
	Data      json.RawMessage `json:"data"`
	Error     *string         `json:"error"`
	ErrorCode *string         `json:"error_code"`
}

type response struct {
	status int
	header http.Header
	env    envelope
	raw    string
}

func (r response) code() string {
	if r.env.ErrorCode == nil {
		return ""
	}
	return *r.env.ErrorCode
}

// data decodes the envelope's data into a map.
func (r response) data(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.env.Data, &m); err != nil {
		t.Fatalf("data of %s: %v", r.raw, err)
	}
	return m
}

// request sends a raw request and checks the envelope invariants every response must meet.
func (g *gateway) request(t testing.TB, method, path, contentType string, body []byte, header map[string]string) response {
	t.Helper()
	return g.requestVia(t.Context(), t, http.DefaultClient, method, path, contentType, body, header)
}

// requestVia is request with ctx through client c.
func (g *gateway) requestVia(ctx context.Context, t testing.TB, c *http.Client, method, path, contentType string, body []byte, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, g.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &r.env); err != nil {
		t.Fatalf("%s %s: %d response is not an envelope: %q", method, path, resp.StatusCode, raw)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("%s %s: no X-Request-Id", method, path)
	}
	if r.env.Success != (resp.StatusCode == http.StatusOK) {
		t.Fatalf("%s %s: status %d with success=%v", method, path, resp.StatusCode, r.env.Success)
	}
	if !r.env.Success {
		if r.env.ErrorCode == nil || r.env.Error == nil || *r.env.Error == "" {
			t.Fatalf("%s %s: error without error/error_code: %s", method, path, raw)
		}
		seenCodes.Store(*r.env.ErrorCode, true)
		seenRouteCodes.Store(routeCode{strings.SplitN(path, "?", 2)[0], *r.env.ErrorCode}, true)
		if want, ok := readmeCodes(t)[*r.env.ErrorCode]; !ok || want != resp.StatusCode {
			t.Fatalf("%s %s: %d %s is not a row of the README's error table (%d)", method, path, resp.StatusCode, *r.env.ErrorCode, want)
		}
		isDispatch := strings.HasPrefix(*r.env.ErrorCode, "dispatch_")
		if hasData := string(r.env.Data) != "null"; hasData != isDispatch {
			t.Fatalf("%s %s: data %s on error %s", method, path, r.env.Data, *r.env.ErrorCode)
		}
	}
	return r
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body as JSON.
func (g *gateway) post(t testing.TB, path string, body any) response {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return g.request(t, http.MethodPost, path, "application/json", b, nil)
}

// mustOK posts and fails the test unless the answer is 200.
func (g *gateway) mustOK(t testing.TB, path string, body any) map[string]any {
	t.Helper()
	r := g.post(t, path, body)
	if r.status != http.StatusOK {
		t.Fatalf("POST %s: %d %s", path, r.status, r.raw)
	}
	return r.data(t)
}

// channel creates a channel and returns its id; the password is always "secret-123".
func (g *gateway) channel(t testing.TB) string {
	t.Helper()
	d := g.mustOK(t, "/channel/create", map[string]any{"channel_name": "test", "password": "secret-123"})
	return d["channel_id"].(string)
}

// obj is a JSON object literal.
type obj = map[string]any

// createBody is a valid create request on channel ch.
func createBody(ch string, extra obj) obj {
	b := obj{"channel_id": ch, "password": "secret-123", "title": "deploy api", "status": "running",
		"message": "started", "severity": "normal", "event_time": 1713750000000}
	for k, v := range extra {
		if v == nil {
			delete(b, k)
			continue
		}
		b[k] = v
	}
	return b
}

// opBody is a valid update/close request of event ev on channel ch.
func opBody(ch, ev string, extra obj) obj {
	b := obj{"channel_id": ch, "password": "secret-123", "event_id": ev, "status": "progress",
		"message": "halfway", "severity": "normal", "event_time": 1713750300000}
	for k, v := range extra {
		if v == nil {
			delete(b, k)
			continue
		}
		b[k] = v
	}
	return b
}
