package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// unlimited turns off the limits of a public gateway (DESIGN.md §8.2) for the throughput
// scenarios, which are no hostile clients.
var unlimited = []string{"--channel-ops-per-second", "0", "--creates-per-minute", "0"}

// The noisy-neighbour scenario: victim channels run a paced lifecycle load well inside their
// limit, first alone, then while one flooder channel sends ten times its limit. The victims'
// p99 must rise by less than 25 % and the flooder must get only 429s beyond its limit.
const (
	noisyVictims       = 8  // victim channels, one client each
	noisyVictimRate    = 40 // ops per second per victim client (limit: -noisy-limit)
	noisyFloodWorkers  = 8  // connections of the flooder
	noisyFloodMultiple = 10 // flooder rate = this × -noisy-limit
)

type noisyResult struct {
	limit              int
	alone, flooded     *result
	victimErrors       int
	floodSent, floodOK int
	floodRefused       int // 429 rate_limited
	floodOther         int // any other answer or failure
	floodElapsed       time.Duration
	retryAfterMissing  int
	floodAllowed       float64 // what the limit lets through in floodElapsed (rate × t + burst)
	victimP99RisePct   float64
	// cpuAlone and cpuFlooded are the server's CPU (cores) during each phase.
	cpuAlone, cpuFlooded float64
}

func (r *noisyResult) print() {
	r.alone.print("victims")
	r.flooded.print("flooded")
	fmt.Printf("noisy: limit=%d/s flooder sent=%d (%.0f/s) accepted=%d (limit allows %.0f) refused_429=%d other=%d retry_after_missing=%d victim_p99_ms alone=%.2f flooded=%.2f rise_pct=%.1f server_cores alone=%.2f flooded=%.2f\n",
		r.limit, r.floodSent, float64(r.floodSent)/r.floodElapsed.Seconds(), r.floodOK, r.floodAllowed, r.floodRefused, r.floodOther,
		r.retryAfterMissing, ms(r.alone.p99), ms(r.flooded.p99), r.victimP99RisePct, r.cpuAlone, r.cpuFlooded)
}

// runNoisy starts its own server with a per-channel limit (other limits off) and measures the
// victims alone, then under the flood.
func runNoisy(ctx context.Context, o options) (*noisyResult, error) {
	srv, err := startServer(ctx, o, "--channel-ops-per-second", strconv.Itoa(o.noisyLimit), "--creates-per-minute", "0")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	c := newClient(srv.url, noisyVictims+noisyFloodWorkers)
	chans, _, err := setupChannels(ctx, c, noisyVictims+1, 2, 16)
	if err != nil {
		return nil, err
	}
	victims, flooder := chans[:noisyVictims], chans[noisyVictims]
	r := &noisyResult{limit: o.noisyLimit}
	// Warm up the victims (credential cache, connections).
	drivePaced(ctx, srv.url, victims, noisyVictimRate, time.Now().Add(2*time.Second))

	cpu0, t0 := srv.cpu(), time.Now()
	lat, sent, errs := drivePaced(ctx, srv.url, victims, noisyVictimRate, t0.Add(o.noisyDuration))
	r.alone = &result{}
	summarise(r.alone, lat, sent, errs, time.Since(t0))
	r.cpuAlone = (srv.cpu() - cpu0).Seconds() / time.Since(t0).Seconds()
	r.victimErrors += errs

	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		r.flood(ctx, srv.url, flooder, float64(noisyFloodMultiple*o.noisyLimit), time.Now().Add(o.noisyDuration))
	}()
	cpu0, t0 = srv.cpu(), time.Now()
	lat, sent, errs = drivePaced(ctx, srv.url, victims, noisyVictimRate, t0.Add(o.noisyDuration))
	r.flooded = &result{}
	summarise(r.flooded, lat, sent, errs, time.Since(t0))
	r.cpuFlooded = (srv.cpu() - cpu0).Seconds() / time.Since(t0).Seconds()
	r.victimErrors += errs
	<-floodDone
	// A token bucket of rate L and burst 2L admits at most L·t + 2L in t.
	r.floodAllowed = float64(o.noisyLimit)*r.floodElapsed.Seconds() + 2*float64(o.noisyLimit)
	if r.alone.p99 > 0 {
		r.victimP99RisePct = (float64(r.flooded.p99)/float64(r.alone.p99) - 1) * 100
	}
	return r, nil
}

// drivePaced runs one client per channel, each sending event lifecycles (create, three
// updates, close) at rate ops per second until deadline; it returns the latencies.
func drivePaced(ctx context.Context, base string, channels []string, rate int, deadline time.Time) (lat []time.Duration, sent, errs int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	for i, ch := range channels {
		wg.Go(func() {
			hc := newConn(base)
			defer hc.close()
			var mine []time.Duration
			n, bad := 0, 0
			next := time.Now().Add(time.Duration(i) * interval / time.Duration(len(channels)))
			do := func(path string, body []byte) string {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				t0 := time.Now()
				status, raw, err := hc.post(path, body)
				mine = append(mine, time.Since(t0))
				n++
				var a opAnswer
				if err != nil || status != http.StatusOK || json.Unmarshal(raw, &a) != nil {
					bad++
					return ""
				}
				return a.Data.EventID
			}
			head := `{"channel_id":"` + ch + `","password":"bench-password","severity":"normal","message":"` + message + `",`
			var buf []byte
			for e := 0; ctx.Err() == nil && time.Now().Before(deadline); e++ {
				t := int64(1713750000000) + int64(e)*10_000
				buf = fmt.Appendf(buf[:0], `%s"title":"deploy api","status":"running","event_time":%d}`, head, t)
				ev := do("/event/create", buf)
				if ev == "" {
					continue
				}
				for u := 1; u <= 3; u++ {
					buf = fmt.Appendf(buf[:0], `%s"event_id":"%s","status":"progress","event_time":%d,"attrs":{"progress":%g}}`, head, ev, t+int64(u), float64(u)/4)
					do("/event/update", buf)
				}
				buf = fmt.Appendf(buf[:0], `%s"event_id":"%s","status":"success","event_time":%d}`, head, ev, t+4)
				do("/event/close", buf)
			}
			mu.Lock()
			lat = append(lat, mine...)
			sent += n
			errs += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat, sent, errs
}

// flood sends creates on one channel at rate per second (open loop, spread over
// noisyFloodWorkers connections) until deadline, and counts the answers.
func (r *noisyResult) flood(ctx context.Context, base, ch string, rate float64, deadline time.Time) {
	var sent, ok, refused, other, noRetry atomic.Int64
	interval := time.Duration(float64(time.Second) * noisyFloodWorkers / rate)
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := range noisyFloodWorkers {
		wg.Go(func() {
			hc := newConn(base)
			defer hc.close()
			next := time.Now().Add(time.Duration(w) * interval / noisyFloodWorkers)
			var buf []byte
			for e := 0; ctx.Err() == nil && time.Now().Before(deadline); e++ {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				buf = fmt.Appendf(buf[:0], `{"channel_id":"%s","password":"bench-password","title":"flood","status":"running","message":"m","severity":"low","event_time":%d}`,
					ch, int64(1713750000000)+int64(w*1_000_000+e))
				status, raw, err := hc.post("/event/create", buf)
				sent.Add(1)
				switch {
				case err != nil:
					other.Add(1)
				case status == http.StatusOK:
					ok.Add(1)
				case status == http.StatusTooManyRequests && json.Valid(raw):
					refused.Add(1)
					if hc.retryAfter == "" {
						noRetry.Add(1)
					}
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	r.floodElapsed = time.Since(t0)
	r.floodSent, r.floodOK, r.floodRefused, r.floodOther = int(sent.Load()), int(ok.Load()), int(refused.Load()), int(other.Load())
	r.retryAfterMissing = int(noRetry.Load())
}
