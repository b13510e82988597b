package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/secretbox"
	"pushgo.dev/gateway/proto/webhook"
)

// TestWithSecrets: serve generates its key in the data dir once and keeps it; ingest and
// dispatch take a key file or run without one; a bad key file stops the start.
func TestWithSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serve := config{command: "serve", dataDir: dir}
	c, err := withSecrets(serve, quiet)
	if err != nil || c.ingest.Secrets == nil || c.dispatch.Secrets != c.ingest.Secrets {
		t.Fatalf("serve: %v, boxes %p %p", err, c.ingest.Secrets, c.dispatch.Secrets)
	}
	path := filepath.Join(dir, "keys", "secrets.key")
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700 | os.ModeDir, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Fatalf("%s: %v %v, want mode %v", p, fi, err, want)
		}
	}
	again, err := withSecrets(serve, quiet)
	if err != nil || again.ingest.Secrets.CurrentKeyID() != c.ingest.Secrets.CurrentKeyID() {
		t.Fatalf("second start: %v, key %s then %s", err, c.ingest.Secrets.CurrentKeyID(), again.ingest.Secrets.CurrentKeyID())
	}

	rotated := filepath.Join(dir, "new.key")
	if err := secretbox.GenerateKeyFile(rotated); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     config
		wantBox bool
		wantErr string
	}{
		{name: "ingest without a key", cfg: config{command: "ingest"}},
		{name: "dispatch with a key", cfg: config{command: "dispatch", secretsKeyFile: path}, wantBox: true},
		{name: "ingest with a rotated key", cfg: config{command: "ingest", secretsKeyFile: rotated, secretsOldKeyFiles: path + ", "}, wantBox: true},
		{name: "old keys without a current one", cfg: config{command: "dispatch", secretsOldKeyFiles: path}, wantErr: "--secrets-old-key-files needs --secrets-key-file"},
		{name: "bad key file", cfg: config{command: "ingest", secretsKeyFile: bad}, wantErr: "--secrets-key-file"},
		{name: "missing key file", cfg: config{command: "serve", dataDir: dir, secretsKeyFile: filepath.Join(dir, "none.key")}, wantErr: "no such file"},
		{name: "lifecycle needs none", cfg: config{command: "lifecycle", secretsKeyFile: bad}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := withSecrets(tt.cfg, quiet)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || (c.ingest.Secrets != nil) != tt.wantBox {
				t.Fatalf("err = %v, box %v, want box %v", err, c.ingest.Secrets != nil, tt.wantBox)
			}
		})
	}
}

// deviceKV returns the raw device bucket of the gateway's broker.
func deviceKV(t *testing.T, g *gateway) jetstream.KeyValue {
	t.Helper()
	kv, err := g.jetStream(t).KeyValue(t.Context(), bus.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func storedDevice(t *testing.T, kv jetstream.KeyValue, key string) ([]byte, *busv1.DeviceRecord) {
	t.Helper()
	e, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	rec := &busv1.DeviceRecord{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		t.Fatal(err)
	}
	return e.Value(), rec
}

// putWebhookRoute writes a device's record as an older build or an attacker would: a webhook
// route to h with the given stored secret.
func putWebhookRoute(t *testing.T, kv jetstream.KeyValue, key string, h *hookReceiver, stored string) {
	t.Helper()
	_, rec := storedDevice(t, kv, key)
	rec.ChannelType, rec.ProviderToken, rec.WebhookSecret = "webhook", h.srv.URL+"/hook", stored
	data, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), key, data); err != nil {
		t.Fatal(err)
	}
}

// TestWebhookSecretSealedAtRest: the secret returned to the client is not in the stored device
// record, yet the webhook delivery is signed with it.
func TestWebhookSecretSealedAtRest(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{allowPrivate: true})
	ch := g.channel(t)
	recv := newHookReceiver(t)
	key := g.hook(t, recv, ch)

	raw, rec := storedDevice(t, deviceKV(t, g), key)
	secret := recv.secret
	if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, []byte(strings.TrimPrefix(secret, "whsec_"))) {
		t.Fatalf("the stored device record holds the webhook secret: %q", raw)
	}
	if want := secretbox.Prefix + g.cfg.ingest.Secrets.CurrentKeyID() + ":"; !strings.HasPrefix(rec.GetWebhookSecret(), want) {
		t.Fatalf("stored webhook_secret = %q, want %s…", rec.GetWebhookSecret(), want)
	}

	ok := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "sealed-1"}))
	got, ids := recv.received() // the receiver verified the signature with the client's secret
	if len(got) != 1 || len(ids) != 1 || got[0]["data"].(map[string]any)["event_id"] != ok["event_id"] {
		t.Fatalf("webhook got %v (%d requests)", got, len(ids))
	}
}

// TestClearWebhookSecretKeepsDeliveringAndIsSealed: a store written by an older build, with the
// secret in clear, still signs deliveries with it, and ingest seals it on its first read.
func TestClearWebhookSecretKeepsDeliveringAndIsSealed(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{allowPrivate: true})
	ch := g.channel(t)
	recv := newHookReceiver(t)
	key := g.device(t, "server")
	kv := deviceKV(t, g)
	legacy := webhook.NewSecret()
	recv.mu.Lock()
	recv.secret = legacy
	recv.mu.Unlock()
	putWebhookRoute(t, kv, key, recv, legacy)
	g.subscribe(t, key, ch) // ingest reads the device: it seals the secret

	var raw []byte
	eventually(t, 5*time.Second, "the clear secret sealed", func() bool {
		var rec *busv1.DeviceRecord
		raw, rec = storedDevice(t, kv, key)
		return secretbox.IsSealed(rec.GetWebhookSecret())
	})
	if bytes.Contains(raw, []byte(legacy)) {
		t.Fatalf("sealed record still holds the secret: %q", raw)
	}
	ok := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "legacy-1"}))
	if got, _ := recv.received(); len(got) != 1 || got[0]["data"].(map[string]any)["event_id"] != ok["event_id"] {
		t.Fatalf("webhook signed with the legacy secret got %v", got)
	}
}

// TestUnreadableWebhookSecretFailsTheTarget: a stored secret sealed with a key this gateway
// does not hold, or tampered with, never signs a request: the target fails with
// webhook_secret_unreadable and the op is a 503.
func TestUnreadableWebhookSecretFailsTheTarget(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{allowPrivate: true, dispatchWait: 2 * time.Second})
	kv := deviceKV(t, g)
	other, err := secretbox.New(bytes.Repeat([]byte{9}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, stored string }{
		{"unknown key", func() string {
			s, _ := other.Seal("whsec_elsewhere", "")
			return s
		}()},
		{"copied from another device", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := g.channel(t)
			recv := newHookReceiver(t)
			key := g.device(t, "server")
			stored := tc.stored
			if stored == "" { // sealed by this gateway, but for another record
				stored, _ = g.cfg.ingest.Secrets.Seal(webhook.NewSecret(), webhook.SecretBinding("0123456789abcdef0123456789abcdef"))
			}
			putWebhookRoute(t, kv, key, recv, stored)
			g.subscribe(t, key, ch)
			r := g.post(t, "/event/create", createBody(ch, obj{"op_id": "unreadable"}))
			if r.status != http.StatusServiceUnavailable || r.code() != "dispatch_partial_failure" {
				t.Fatalf("op to an unreadable secret: %d %s", r.status, r.raw)
			}
			if receipts := opReceipts(t, g, ch, "unreadable"); receipts["webhook"] != "FAILED webhook_secret_unreadable" {
				t.Fatalf("receipts %v", receipts)
			}
			if _, ids := recv.received(); len(ids) != 0 {
				t.Fatalf("the receiver got %d requests", len(ids))
			}
		})
	}
}
