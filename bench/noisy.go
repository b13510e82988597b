package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// unlimited turns off the limits of a public gateway (DESIGN.md §8.2) for the throughput
// scenarios, which are no hostile clients: the fan-out scenario runs 8 clients on one channel.
var unlimited = []string{"--channel-ops-per-second", "0", "--creates-per-minute", "0", "--channel-concurrency", "0"}

// The noisy-neighbour scenario: victim channels run a paced lifecycle load well inside their
// limit, first alone, then while one flooder channel sends ten times its limit. The victims'
// p99 must rise by less than 25 % and the flooder must get only 429s beyond its limit.
const (
	noisyVictims       = 8  // victim channels, one client each
	noisyVictimRate    = 40 // ops per second per victim client (limit: -noisy-limit)
	noisyFloodWorkers  = 8  // connections of the flooder
	noisyFloodMultiple = 10 // flooder rate = this × -noisy-limit
	noisyRounds        = 3  // alternating pairs of phases (alone, flooded)
	// noisyFloodWarmup is how long the flood runs before a flooded phase is measured.
	noisyFloodWarmup = 2 * time.Second
)

type noisyResult struct {
	limit              int
	alone, flooded     *result
	burst              *result // the victims during each flood's first noisyFloodWarmup
	victimErrors       int
	floodSent, floodOK int
	floodRefused       int           // 429 rate_limited
	floodOther         int           // any other answer or failure
	floodElapsed       time.Duration // all rounds
	floodRound         time.Duration // the last round
	retryAfterMissing  int
	floodAllowed       float64 // what the limit lets through in floodElapsed (rate × t + burst)
	victimP99RisePct   float64
	// cpuAlone and cpuFlooded are the server's CPU (cores) during each phase.
	cpuAlone, cpuFlooded float64
}

func (r *noisyResult) print() {
	r.alone.print("victims")
	r.flooded.print("flooded")
	fmt.Printf("noisy: limit=%d/s flooder sent=%d (%.0f/s) accepted=%d (limit allows %.0f) refused_429=%d other=%d retry_after_missing=%d victim_p99_ms alone=%.2f flooded=%.2f rise_pct=%.1f burst_window=%.2f server_cores alone=%.2f flooded=%.2f\n",
		r.limit, r.floodSent, float64(r.floodSent)/r.floodElapsed.Seconds(), r.floodOK, r.floodAllowed, r.floodRefused, r.floodOther,
		r.retryAfterMissing, ms(r.alone.p99), ms(r.flooded.p99), r.victimP99RisePct, ms(r.burst.p99), r.cpuAlone, r.cpuFlooded)
}

// runNoisy starts its own server with a per-channel limit (other limits off) and measures the
// victims alone and under the flood, in noisyRounds alternating pairs of phases so that the
// shared machine's drift falls on both alike; each side's p99 is taken over all its rounds.
//
// A flooded phase starts measuring noisyFloodWarmup after the flood begins: by then the
// flooder has spent its burst (2× its limit, admitted at once as DESIGN.md §8.2 allows) and
// the victims see what a flood beyond the limit costs them. The burst window is measured on
// its own (burst) and printed beside it.
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

	phase := o.noisyDuration / noisyRounds
	var alone, flooded, burst []time.Duration
	var aloneSent, floodedSent, aloneErrs, floodedErrs int
	var aloneCPU, floodedCPU, aloneT, floodedT time.Duration
	for round := range noisyRounds {
		cpu0, t0 := srv.cpu(), time.Now()
		lat, sent, errs := drivePaced(ctx, srv.url, victims, noisyVictimRate, t0.Add(phase))
		alone, aloneSent, aloneErrs = append(alone, lat...), aloneSent+sent, aloneErrs+errs
		aloneCPU, aloneT = aloneCPU+srv.cpu()-cpu0, aloneT+time.Since(t0)

		floodDone := make(chan struct{})
		floodStart := time.Now()
		go func() {
			defer close(floodDone)
			r.flood(ctx, srv.url, flooder, float64(noisyFloodMultiple*o.noisyLimit), floodStart.Add(noisyFloodWarmup+phase))
		}()
		lat, _, errs = drivePaced(ctx, srv.url, victims, noisyVictimRate, floodStart.Add(noisyFloodWarmup))
		burst, floodedErrs = append(burst, lat...), floodedErrs+errs
		var prof chan error
		if srv.pprofURL != "" && round == noisyRounds-1 {
			// The last flooded phase: CPU and the allocations made during it.
			if err := fetch(ctx, srv.pprofURL+"/debug/pprof/allocs", filepath.Join(o.profile, "noisy-allocs-before.pprof")); err != nil {
				return nil, err
			}
			prof = make(chan error, 1)
			go func() {
				prof <- fetch(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", srv.pprofURL, max(int(phase.Seconds()), 1)),
					filepath.Join(o.profile, "noisy-cpu.pprof"))
			}()
		}
		cpu0, t0 = srv.cpu(), time.Now()
		lat, sent, errs = drivePaced(ctx, srv.url, victims, noisyVictimRate, floodStart.Add(noisyFloodWarmup+phase))
		if prof != nil {
			if err := <-prof; err != nil {
				return nil, err
			}
			if err := fetch(ctx, srv.pprofURL+"/debug/pprof/allocs", filepath.Join(o.profile, "noisy-allocs-after.pprof")); err != nil {
				return nil, err
			}
		}
		flooded, floodedSent, floodedErrs = append(flooded, lat...), floodedSent+sent, floodedErrs+errs
		floodedCPU, floodedT = floodedCPU+srv.cpu()-cpu0, floodedT+time.Since(t0)
		<-floodDone
		// A token bucket of rate L and burst 2L admits at most L·t + 2L in t (it refills
		// to its burst during the alone phase).
		r.floodAllowed += float64(o.noisyLimit)*r.floodRound.Seconds() + 2*float64(o.noisyLimit)
	}
	r.alone, r.flooded, r.burst = &result{}, &result{}, &result{}
	summarise(r.alone, alone, aloneSent, aloneErrs, aloneT)
	summarise(r.flooded, flooded, floodedSent, floodedErrs, floodedT)
	summarise(r.burst, burst, len(burst), 0, noisyRounds*noisyFloodWarmup)
	r.victimErrors = aloneErrs + floodedErrs
	r.cpuAlone, r.cpuFlooded = aloneCPU.Seconds()/aloneT.Seconds(), floodedCPU.Seconds()/floodedT.Seconds()
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
	r.floodRound = time.Since(t0)
	r.floodElapsed += r.floodRound
	r.floodSent += int(sent.Load())
	r.floodOK += int(ok.Load())
	r.floodRefused += int(refused.Load())
	r.floodOther += int(other.Load())
	r.retryAfterMissing += int(noRetry.Load())
}
