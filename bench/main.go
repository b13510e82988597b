// Command bench measures the gateway the way its users compare push servers: how many event
// ops per second `pushgo serve` takes over HTTP with keep-alive connections, how fast the tail
// answers, how much server CPU and memory it costs, how fast it fans out, and — in the same
// run — what a minimal HTTP server doing one synchronous JetStream publish per request manages
// on the same machine. It verifies at the end that every acknowledged op reached every
// subscribed inbox exactly once. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

type options struct {
	pushgo         string
	duration       time.Duration
	ops            int
	liveEvents     int
	concurrency    int
	fanoutDuration time.Duration
	fanoutDevices  int
	fanoutClients  int
	baseline       time.Duration
	profile        string
	keep           bool
	idle           time.Duration
	noisyDuration  time.Duration
	noisyLimit     int
	noisyOnly      bool
	// providerDuration and providerDevices: the provider fan-out (APNs and FCM fakes).
	providerDuration time.Duration
	providerDevices  int
	// serverEnv is added to the server's environment.
	serverEnv []string
}

func main() {
	var o options
	flag.StringVar(&o.pushgo, "pushgo", "bin/pushgo", "the pushgo binary to measure")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "length of the lifecycle scenario")
	flag.IntVar(&o.ops, "ops", 0, "run the lifecycle scenario for this many ops instead of -duration (soak)")
	flag.IntVar(&o.liveEvents, "live-events", 0, "create this many events, then only update them (a fixed number of events, however many ops; 0: lifecycles of new events)")
	flag.IntVar(&o.concurrency, "c", 32, "concurrent clients of the lifecycle scenario")
	flag.DurationVar(&o.fanoutDuration, "fanout-duration", 15*time.Second, "length of the fan-out scenario (0 skips it)")
	flag.IntVar(&o.fanoutDevices, "fanout-devices", 1000, "devices subscribed to the fan-out channel")
	flag.IntVar(&o.fanoutClients, "fanout-clients", 8, "concurrent clients of the fan-out scenario")
	flag.DurationVar(&o.baseline, "baseline", 10*time.Second, "length of the baseline run (0 skips it)")
	flag.StringVar(&o.profile, "profile", "", "directory to write CPU and allocation profiles of the server to")
	flag.BoolVar(&o.keep, "keep", false, "keep the server's data directory")
	flag.DurationVar(&o.idle, "idle", 15*time.Second, "how long to watch the idle server after the lifecycle load (CPU, RSS)")
	flag.DurationVar(&o.noisyDuration, "noisy-duration", 15*time.Second, "measured time of each side of the noisy-neighbour scenario (victims alone, flooded), split over 3 rounds (0 skips it)")
	flag.IntVar(&o.noisyLimit, "noisy-limit", 100, "--channel-ops-per-second of the noisy-neighbour scenario; the flooder sends 10x")
	flag.BoolVar(&o.noisyOnly, "noisy-only", false, "run only the noisy-neighbour scenario")
	flag.DurationVar(&o.providerDuration, "provider-duration", 10*time.Second, "length of the provider fan-out against local APNs and FCM fakes (0 skips it)")
	flag.IntVar(&o.providerDevices, "provider-devices", 1000, "APNs devices, and as many FCM devices, on the provider fan-out's channel")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if _, err := os.Stat(o.pushgo); err != nil {
		return fmt.Errorf("%s: %w (run make build)", o.pushgo, err)
	}
	if o.noisyOnly {
		noisy, err := runNoisy(ctx, o)
		if err != nil {
			return fmt.Errorf("noisy: %w", err)
		}
		noisy.print()
		return nil
	}
	var base *result
	if o.baseline > 0 {
		var err error
		if base, err = runBaseline(ctx, o); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		base.print("baseline")
	}
	// The throughput scenarios measure the pipeline, not the limits of a public gateway: their
	// channels take ~170 ops/s each and the fan-out registers 1000 devices from one address.
	srv, err := startServer(ctx, o, unlimited...)
	if err != nil {
		return err
	}
	defer srv.stop()

	life, err := runLifecycle(ctx, o, srv)
	if err != nil {
		return fmt.Errorf("lifecycle: %w", err)
	}
	life.print("lifecycle")
	rssEnd := srv.rss()
	var idleProf chan error
	if srv.pprofURL != "" {
		idleProf = make(chan error, 1)
		go func() {
			idleProf <- fetch(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", srv.pprofURL, max(int(o.idle.Seconds())-1, 1)),
				filepath.Join(o.profile, "cpu-idle.pprof"))
		}()
	}
	idle, err := srv.idleCPU(ctx, o.idle)
	if err != nil {
		return err
	}
	if idleProf != nil {
		if err := <-idleProf; err != nil {
			return err
		}
	}
	fmt.Printf("server: RSS %d MB at the end of the load, %d MB after %s idle (peak %d MB); idle CPU %.2f%% of one core\n",
		rssEnd>>20, srv.rss()>>20, o.idle, srv.peakRSS()>>20, idle*100)
	if srv.pprofURL != "" {
		// The text form ends with the runtime's memory statistics (heap in use, idle, released):
		// fetched first, as the RSS above saw them; the profile after it runs a collection.
		if err := fetch(ctx, srv.pprofURL+"/debug/pprof/heap?debug=1", filepath.Join(o.profile, "heap-idle.txt")); err != nil {
			return err
		}
		if err := fetch(ctx, srv.pprofURL+"/debug/pprof/heap?gc=1", filepath.Join(o.profile, "heap-idle.pprof")); err != nil {
			return err
		}
	}

	var fan *result
	if o.fanoutDuration > 0 {
		if fan, err = runFanout(ctx, o, srv); err != nil {
			return fmt.Errorf("fanout: %w", err)
		}
		fan.print("fanout")
	}
	// The inboxes are counted from the stopped server's store.
	counts, err := srv.inboxCounts(ctx)
	if err != nil {
		return fmt.Errorf("count the inboxes: %w", err)
	}
	srv.stop()
	for _, r := range []*result{life, fan} {
		if r != nil {
			r.verify(counts)
			fmt.Println(r.note)
		}
	}
	var prov *result
	if o.providerDuration > 0 {
		if prov, err = runProviders(ctx, o); err != nil {
			return fmt.Errorf("providers: %w", err)
		}
		prov.print("providers")
	}
	var noisy *noisyResult
	if o.noisyDuration > 0 {
		if noisy, err = runNoisy(ctx, o); err != nil {
			return fmt.Errorf("noisy: %w", err)
		}
		noisy.print()
	}
	ratio, deliveries := 0.0, 0.0
	if base != nil && base.opsPerSec > 0 {
		ratio = life.opsPerSec / base.opsPerSec
	}
	if fan != nil {
		deliveries = fan.deliveriesPerSec
	}
	errs := life.errors
	if fan != nil {
		errs += fan.errors
	}
	providerRate := 0.0
	if prov != nil {
		providerRate = prov.deliveriesPerSec
		errs += prov.errors
	}
	fmt.Printf("bench: ops_per_s=%.0f p50_ms=%.2f p99_ms=%.2f cpu_us_per_op=%.0f baseline_ratio=%.2f fanout_deliveries_per_s=%.0f provider_requests_per_s=%.0f errors=%d\n",
		life.opsPerSec, ms(life.p50), ms(life.p99), life.cpuPerOp.Seconds()*1e6, ratio, deliveries, providerRate, errs)
	if noisy != nil {
		errs += noisy.victimErrors + noisy.floodOther
	}
	if errs > 0 || !life.verified || (fan != nil && !fan.verified) || (prov != nil && !prov.verified) {
		return errors.New("errors or undelivered pushes; see above")
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
