package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is what one scenario measured.
type result struct {
	ops, errors        int
	elapsed            time.Duration
	opsPerSec          float64
	p50, p90, p99, max time.Duration
	cpuPerOp           time.Duration
	clientCPUPerOp     time.Duration // the load generator's own CPU
	deliveriesPerSec   float64
	deliveriesOf       string // what deliveriesPerSec counts ("" : inbox deliveries)
	verified           bool
	note               string
	// keys are the devices of each channel, expect the pushes each of them must hold (verify).
	keys   map[string][]string
	expect map[string]int
}

func (r *result) print(name string) {
	fmt.Printf("%-9s ops=%d in %.1fs: %.0f ops/s  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.1f ms  errors %d",
		name, r.ops, r.elapsed.Seconds(), r.opsPerSec, ms(r.p50), ms(r.p90), ms(r.p99), ms(r.max), r.errors)
	if r.cpuPerOp > 0 {
		fmt.Printf("  server CPU %.0f µs/op", r.cpuPerOp.Seconds()*1e6)
	}
	if r.clientCPUPerOp > 0 {
		fmt.Printf("  (load generator %.0f µs/op)", r.clientCPUPerOp.Seconds()*1e6)
	}
	if r.deliveriesPerSec > 0 {
		fmt.Printf("  %.0f %s/s", r.deliveriesPerSec, cmp.Or(r.deliveriesOf, "inbox deliveries"))
	}
	if r.note != "" {
		fmt.Printf("  %s", r.note)
	}
	fmt.Println()
}

// client posts JSON over keep-alive connections.
type client struct {
	base string
	http *http.Client
}

func newClient(base string, conns int) *client {
	return &client{base: base, http: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2}}}
}

// send posts body as JSON and decodes the answer into out.
func (c *client) send(ctx context.Context, path string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	_ = json.Unmarshal(raw, out)
	return resp.StatusCode, nil
}

// post returns the status and the envelope's data.
func (c *client) post(ctx context.Context, path string, body []byte) (int, map[string]any, error) {
	var env struct {
		Data map[string]any `json:"data"`
	}
	status, err := c.send(ctx, path, body, &env)
	return status, env.Data, err
}

// opAnswer is the part of an event op's answer the load needs; only it is decoded.
type opAnswer struct {
	Data struct {
		EventID string `json:"event_id"`
		Applied bool   `json:"applied"`
	} `json:"data"`
}

// mustOK posts and fails unless 200.
func (c *client) mustOK(ctx context.Context, path string, body any) (map[string]any, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	status, data, err := c.post(ctx, path, b)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d", path, status)
	}
	return data, nil
}

// message is the ~300-byte message of every op.
var message = strings.Repeat("deploy step finished; ", 14)[:300]

// drive runs event lifecycles (create, three updates, close) from n clients, each on
// channel channels[i % len], until deadline or until ops ops were sent. With live > 0 it
// instead creates live events in all (spread over the clients) and then only updates them,
// round robin: a store whose number of events stays fixed however many ops it takes (the
// soak's growth figure, issue 12). It returns the per-channel count of acknowledged, applied
// ops, and the latencies.
func drive(ctx context.Context, c *client, n int, channels []string, deadline time.Time, ops, live int) (acked map[string]int, lat []time.Duration, sent, errs int) {
	var mu sync.Mutex
	acked = map[string]int{}
	var budget atomic.Int64
	budget.Store(int64(ops))
	var nsent, nerr atomic.Int64
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			ch := channels[w%len(channels)]
			mine := make([]time.Duration, 0, 4096)
			ok := 0
			var buf []byte
			hc := newConn(c.base)
			defer hc.close()
			do := func(path string, body []byte) string {
				t0 := time.Now()
				status, raw, err := hc.post(path, body)
				mine = append(mine, time.Since(t0))
				nsent.Add(1)
				var a opAnswer
				if err != nil || status != http.StatusOK || json.Unmarshal(raw, &a) != nil {
					nerr.Add(1)
					return ""
				}
				if a.Data.Applied {
					ok++
				}
				return a.Data.EventID
			}
			// Bodies are written by hand rather than through encoding/json, for the same reason.
			head := `{"channel_id":"` + ch + `","password":"bench-password","severity":"normal","message":"` + message + `",`
			done := func(cost int64) bool {
				return ops > 0 && budget.Add(-cost) < 0 || ops == 0 && time.Now().After(deadline)
			}
			if live > 0 {
				var evs []string
				for e := 0; e < (live+n-1-w)/n && ctx.Err() == nil && !done(1); e++ {
					buf = fmt.Appendf(buf[:0], `%s"title":"deploy api","status":"running","event_time":%d,"attrs":{"service":"api","progress":0}}`, head, int64(1713750000000))
					if ev := do("/event/create", buf); ev != "" {
						evs = append(evs, ev)
					}
				}
				for u := 1; len(evs) > 0 && ctx.Err() == nil && !done(1); u++ {
					buf = fmt.Appendf(buf[:0], `%s"event_id":"%s","status":"progress","event_time":%d,"attrs":{"progress":%d}}`, head, evs[u%len(evs)], int64(1713750000000)+int64(u), u)
					do("/event/update", buf)
				}
			}
			for e := 0; live == 0 && ctx.Err() == nil; e++ {
				if done(5) {
					break
				}
				t := int64(1713750000000) + int64(e)*10_000
				buf = fmt.Appendf(buf[:0], `%s"title":"deploy api","status":"running","event_time":%d,"attrs":{"service":"api","revision":"8f3c2a1","progress":0}}`, head, t)
				ev := do("/event/create", buf)
				if ev == "" {
					continue
				}
				for u := 1; u <= 3; u++ {
					buf = fmt.Appendf(buf[:0], `%s"event_id":"%s","status":"progress","event_time":%d,"attrs":{"progress":%g}}`, head, ev, t+int64(u), float64(u)/4)
					do("/event/update", buf)
				}
				buf = fmt.Appendf(buf[:0], `%s"event_id":"%s","status":"success","event_time":%d,"attrs":{"progress":1}}`, head, ev, t+4)
				do("/event/close", buf)
			}
			mu.Lock()
			lat = append(lat, mine...)
			acked[ch] += ok
			mu.Unlock()
		})
	}
	wg.Wait()
	return acked, lat, int(nsent.Load()), int(nerr.Load())
}

// summarise fills the latency and rate fields of r.
func summarise(r *result, lat []time.Duration, sent, errs int, elapsed time.Duration) {
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	r.ops, r.errors, r.elapsed = sent, errs, elapsed
	r.opsPerSec = float64(sent-errs) / elapsed.Seconds()
	r.p50, r.p90, r.p99 = q(0.50), q(0.90), q(0.99)
	if len(lat) > 0 {
		r.max = lat[len(lat)-1]
	}
}

// setupChannels creates n channels with devices subscribed devices each, with up to par
// requests at once; it returns the channel ids and their device keys.
func setupChannels(ctx context.Context, c *client, n, devices, par int) ([]string, map[string][]string, error) {
	var mu sync.Mutex
	var chans []string
	keys := map[string][]string{}
	for i := range n {
		d, err := c.mustOK(ctx, "/channel/create", map[string]any{"channel_name": fmt.Sprint("bench-", i), "password": "bench-password"})
		if err != nil {
			return nil, nil, err
		}
		chans = append(chans, d["channel_id"].(string))
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for _, ch := range chans {
		for range devices {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				d, err := c.mustOK(ctx, "/device/register", map[string]any{"platform": "web"})
				if err == nil {
					key := d["device_key"].(string)
					_, err = c.mustOK(ctx, "/channel/subscribe", map[string]any{"device_key": key, "channel_id": ch, "password": "bench-password"})
					mu.Lock()
					keys[ch] = append(keys[ch], key)
					mu.Unlock()
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			})
		}
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, nil, err
	}
	return chans, keys, nil
}

// verify checks that every device's inbox holds exactly the acknowledged, applied ops of its
// channel (a count per device, not a sample), from counts (server.inboxCounts).
func (r *result) verify(counts map[string]uint64) {
	bad, devices, items, fewer, missing, extra := 0, 0, 0, 0, 0, 0
	for ch, ks := range r.keys {
		for _, k := range ks {
			devices++
			items += int(counts[k])
			switch d := int(counts[k]) - r.expect[ch]; {
			case d < 0:
				bad, fewer, missing = bad+1, fewer+1, missing-d
			case d > 0:
				bad, extra = bad+1, extra+d
			}
		}
	}
	r.verified = bad == 0
	if bad > 0 {
		// More than acknowledged is what an op answered with an error (a dispatch_timeout)
		// that still completed leaves; fewer is a lost push.
		r.note = fmt.Sprintf("VERIFY FAILED: %d of %d inboxes do not hold exactly their channel's acknowledged ops: %d hold fewer (%d pushes missing), the others %d pushes more",
			bad, devices, fewer, missing, extra)
		return
	}
	r.note = fmt.Sprintf("verified: %d inboxes hold exactly their %d pushes", devices, items)
}

// runLifecycle is the lifecycle scenario: C clients, one channel each with 2 devices.
func runLifecycle(ctx context.Context, o options, srv *server) (*result, error) {
	c := newClient(srv.url, o.concurrency)
	chans, keys, err := setupChannels(ctx, c, o.concurrency, 2, 16)
	if err != nil {
		return nil, err
	}
	// Warm up (credential cache, connections) before measuring.
	warm, _, _, _ := drive(ctx, c, o.concurrency, chans, time.Now().Add(2*time.Second), 0, 0)

	var profDone chan error
	if srv.pprofURL != "" {
		profDone = make(chan error, 1)
		secs := max(int(o.duration.Seconds())-2, 1)
		if o.ops > 0 {
			secs = 30 // a soak is profiled over its first 30 s
		}
		go func() {
			profDone <- fetch(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", srv.pprofURL, secs), filepath.Join(o.profile, "cpu.pprof"))
		}()
	}
	cpu0, self0, t0 := srv.cpu(), selfCPU(), time.Now()
	acked, lat, sent, errs := drive(ctx, c, o.concurrency, chans, t0.Add(o.duration), o.ops, o.liveEvents)
	elapsed, cpu, self := time.Since(t0), srv.cpu()-cpu0, selfCPU()-self0
	r := &result{}
	summarise(r, lat, sent, errs, elapsed)
	if sent > errs {
		r.cpuPerOp = cpu / time.Duration(sent-errs)
		r.clientCPUPerOp = self / time.Duration(sent-errs)
	}
	if profDone != nil {
		if err := <-profDone; err != nil {
			return nil, err
		}
		if err := fetch(ctx, srv.pprofURL+"/debug/pprof/allocs", filepath.Join(o.profile, "allocs.pprof")); err != nil {
			return nil, err
		}
		if err := fetch(ctx, srv.pprofURL+"/debug/pprof/heap?gc=1", filepath.Join(o.profile, "heap.pprof")); err != nil {
			return nil, err
		}
	}
	// The warm-up's pushes are in the inboxes too.
	for ch := range keys {
		acked[ch] += warm[ch]
	}
	r.keys, r.expect = keys, acked
	return r, nil
}

// runFanout is the fan-out scenario: one channel with many devices, a few clients.
func runFanout(ctx context.Context, o options, srv *server) (*result, error) {
	c := newClient(srv.url, max(o.fanoutClients, 16))
	chans, keys, err := setupChannels(ctx, c, 1, o.fanoutDevices, 16)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	acked, lat, sent, errs := drive(ctx, c, o.fanoutClients, chans, t0.Add(o.fanoutDuration), 0, 0)
	elapsed := time.Since(t0)
	r := &result{}
	summarise(r, lat, sent, errs, elapsed)
	r.deliveriesPerSec = float64(acked[chans[0]]*len(keys[chans[0]])) / elapsed.Seconds()
	r.keys, r.expect = keys, acked
	return r, nil
}

// fetch saves a URL to a file.
func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_, err = io.Copy(f, resp.Body)
	return err
}
