package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pushgo.dev/gateway/proto/fakes/apnsfake"
	"pushgo.dev/gateway/proto/fakes/fcmfake"
)

// fakeHost adapts the fakes' test hooks (Helper, Cleanup, Fatal) to a bench run: cleanups run
// at close, and a fatal setup error panics (the fakes only fail to generate a key).
type fakeHost struct{ cleanups []func() }

func (*fakeHost) Helper()            {}
func (h *fakeHost) Cleanup(f func()) { h.cleanups = append(h.cleanups, f) }
func (*fakeHost) Fatal(args ...any)  { panic(fmt.Sprint(args...)) }
func (h *fakeHost) close() {
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
}

// runProviders is the provider fan-out (issue 13): one channel with providerDevices APNs and
// as many FCM devices, against the local fakes answering at once; ops are sent for
// providerDuration and the figure is provider requests accepted per second. The server trusts
// the fakes through SSL_CERT_FILE, as an operator's would trust a proxy's CA.
func runProviders(ctx context.Context, o options) (*result, error) {
	host := &fakeHost{}
	defer host.close()
	apple, google := apnsfake.New(host), fcmfake.New(host)
	dir, err := os.MkdirTemp("", "pushgo-bench-providers-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	files := map[string][]byte{
		"AuthKey.p8":           apple.KeyPEM,
		"service-account.json": google.Credentials(),
		"fakes.pem":            append(apple.CertPEM(), google.CertPEM()...),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	po := o
	po.serverEnv = []string{"SSL_CERT_FILE=" + filepath.Join(dir, "fakes.pem")}
	srv, err := startServer(ctx, po, append(unlimited,
		"--apns-key-file", filepath.Join(dir, "AuthKey.p8"), "--apns-key-id", apnsfake.KeyID, "--apns-team-id", apnsfake.TeamID,
		"--apns-topic", apnsfake.Topic, "--apns-url", apple.URL,
		"--fcm-credentials-file", filepath.Join(dir, "service-account.json"), "--fcm-url", google.URL)...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	c := newClient(srv.url, 16)
	d, err := c.mustOK(ctx, "/channel/create", map[string]any{"channel_name": "bench-providers", "password": "bench-password"})
	if err != nil {
		return nil, err
	}
	ch := d["channel_id"].(string)
	var failed atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range 2 * o.providerDevices {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			platform, route, token := "ios", "apns", fmt.Sprintf("%064x", i)
			if i%2 == 1 {
				platform, route, token = "android", "fcm", fmt.Sprintf("fcm-bench-token-%0140d", i)
			}
			d, err := c.mustOK(ctx, "/device/register", map[string]any{"platform": platform})
			if err == nil {
				key := d["device_key"].(string)
				if _, err = c.mustOK(ctx, "/channel/device", map[string]any{"device_key": key, "channel_type": route, "provider_token": token}); err == nil {
					_, err = c.mustOK(ctx, "/channel/subscribe", map[string]any{"device_key": key, "channel_id": ch, "password": "bench-password"})
				}
			}
			if err != nil {
				failed.CompareAndSwap(nil, err)
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return nil, fmt.Errorf("register the provider devices: %w", err)
	}
	var profDone chan error
	if srv.pprofURL != "" { // the server's CPU profile, and this process's (the fakes)
		profDone = make(chan error, 1)
		go func() {
			profDone <- fetch(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", srv.pprofURL, max(int(o.providerDuration.Seconds()), 1)),
				filepath.Join(o.profile, "cpu-providers.pprof"))
		}()
		f, err := os.Create(filepath.Join(o.profile, "cpu-providers-fakes.pprof"))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	t0 := time.Now()
	acked, lat, sent, errs := drive(ctx, c, o.fanoutClients, []string{ch}, t0.Add(o.providerDuration), 0, 0)
	elapsed := time.Since(t0)
	if profDone != nil {
		if err := <-profDone; err != nil {
			return nil, err
		}
	}
	r := &result{}
	summarise(r, lat, sent, errs, elapsed)
	apns, fcm := len(apple.Received("")), len(google.Received(""))
	r.deliveriesPerSec, r.deliveriesOf = float64(apns+fcm)/elapsed.Seconds(), "provider requests"
	want := acked[ch] * o.providerDevices
	r.verified = apns >= want && fcm >= want && len(apple.Refused()) == 0 && len(google.Refused()) == 0
	r.note = fmt.Sprintf("providers: %d ops acknowledged; APNs accepted %d and FCM %d requests (want ≥ %d each), refused %d and %d",
		acked[ch], apns, fcm, want, len(apple.Refused()), len(google.Refused()))
	if !r.verified {
		r.note = "VERIFY FAILED: " + r.note + "; " + strings.Join(append(apple.Refused(), google.Refused()...), "; ")
	}
	return r, nil
}
