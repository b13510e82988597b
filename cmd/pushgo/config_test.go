package main

import (
	"io"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/bus"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PUSHGO_TOKEN": "from-env", "PUSHGO_DISPATCH_WAIT": "2s", "PUSHGO_HTTP_ADDR": "127.0.0.1:1"}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, c config)
	}{
		{"env sets defaults", []string{"serve"}, false, func(t *testing.T, c config) {
			if c.ingest.Token != "from-env" || c.ingest.DispatchWait != 2*time.Second || c.ingest.HTTPAddr != "127.0.0.1:1" || c.bus.Replicas != 1 {
				t.Fatalf("%+v", c.ingest)
			}
			if c.dispatch.Budget != 1600*time.Millisecond {
				t.Fatalf("delivery budget %s is not derived from the dispatch wait", c.dispatch.Budget)
			}
		}},
		{"flags win over env", []string{"serve", "--token", "flag", "--dispatch-wait", "1s"}, false, func(t *testing.T, c config) {
			if c.ingest.Token != "flag" || c.ingest.DispatchWait != time.Second {
				t.Fatalf("%+v", c.ingest)
			}
		}},
		{"bus options reach every service", []string{"lifecycle", "--replicas", "3", "--idempotency-window", "1h"}, false, func(t *testing.T, c config) {
			if c.lifecycle.Bus.Replicas != 3 || c.dispatch.Bus.IdempotencyWindow != time.Hour || c.ingest.Bus.Replicas != 3 {
				t.Fatalf("%+v", c.bus)
			}
		}},
		{"healthcheck needs no service settings", []string{"healthcheck", "--http-addr", "127.0.0.1:9"}, false, func(t *testing.T, c config) {
			if c.checkURL != "127.0.0.1:9" {
				t.Fatalf("%+v", c)
			}
		}},
		{"no command", nil, true, nil},
		{"unknown command", []string{"launch"}, true, nil},
		{"unknown flag", []string{"serve", "--nope"}, true, nil},
		{"stray argument", []string{"dispatch", "extra"}, true, nil},
		{"bad replicas", []string{"ingest", "--replicas", "7"}, true, nil},
		{"budget beyond the wait", []string{"serve", "--delivery-budget", "3s"}, true, nil},
		{"limits", []string{"serve"}, false, func(t *testing.T, c config) {
			if c.ingest.ChannelOpsPerSecond != 100 || c.ingest.TenantOpsPerSecond != 1000 || c.ingest.SubscribersPerChannel != 10000 {
				t.Fatalf("defaults %+v", c.ingest)
			}
		}},
		{"limits off", []string{"ingest", "--channel-ops-per-second", "0", "--tenant-ops-per-second", "2.5", "--subscribers-per-channel", "0"}, false, func(t *testing.T, c config) {
			if c.ingest.ChannelOpsPerSecond != 0 || c.ingest.TenantOpsPerSecond != 2.5 || c.ingest.SubscribersPerChannel != 0 {
				t.Fatalf("%+v", c.ingest)
			}
		}},
		{"negative limit", []string{"serve", "--channel-ops-per-second", "-1"}, true, nil},
		{"hostile-client limits", []string{"ingest", "--creates-per-minute", "0", "--trusted-proxies", "10.0.0.0/8, ::1"}, false, func(t *testing.T, c config) {
			i := c.ingest
			if i.CreatesPerMinute != 0 || i.HashConcurrency != 4 || i.PasswordFailuresPerMinute != 10 || i.TrustedProxies != "10.0.0.0/8, ::1" || i.LimitExempt != "" {
				t.Fatalf("%+v", i)
			}
		}},
		{"bad trusted proxy", []string{"serve", "--trusted-proxies", "10.0.0.0/33"}, true, nil},
		{"events kept for ever", []string{"lifecycle", "--events-max-age", "0"}, false, func(t *testing.T, c config) {
			if c.lifecycle.Bus.EventsMaxAge != bus.EventsForever || c.bus.ConfirmShorterRetention {
				t.Fatalf("%+v", c.lifecycle.Bus)
			}
		}},
		{"shorter retention confirmed", []string{"ingest", "--events-max-age", "24h", "--confirm-shorter-retention"}, false, func(t *testing.T, c config) {
			if c.ingest.Bus.EventsMaxAge != 24*time.Hour || !c.ingest.Bus.ConfirmShorterRetention || !c.dispatch.Bus.ConfirmShorterRetention {
				t.Fatalf("%+v", c.ingest.Bus)
			}
		}},
		{"negative events max age", []string{"serve", "--events-max-age", "-1h"}, true, nil},
		{"secrets key files", []string{"dispatch", "--secrets-key-file", "/k/new", "--secrets-old-key-files", "/k/a,/k/b"}, false, func(t *testing.T, c config) {
			if c.secretsKeyFile != "/k/new" || c.secretsOldKeyFiles != "/k/a,/k/b" {
				t.Fatalf("%+v", c)
			}
		}},
		{"lifecycle holds no secrets key", []string{"lifecycle", "--secrets-key-file", "/k"}, true, nil},
		{"inbox cap", []string{"dispatch", "--inbox-per-device", "3", "--webhook-allow-private"}, false, func(t *testing.T, c config) {
			if c.dispatch.Bus.InboxPerDevice != 3 || !c.dispatch.WebhookAllowPrivate || c.dispatch.Budget != 4*time.Second {
				t.Fatalf("%+v", c.dispatch)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tt.args, getenv, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}
