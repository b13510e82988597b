package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// These tests run the built binary, as an operator would.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// pushgoBinary builds bin/pushgo once per test run ($PUSHGO_BIN, when set, is used instead).
func pushgoBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	buildOnce.Do(func() {
		if p := os.Getenv("PUSHGO_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "pushgo-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pushgo")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a running pushgo process.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(pushgoBinary(t), args...), out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "PUSHGO_LOG_LEVEL=debug")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of pushgo %v:\n%s", args, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and requires a clean exit within 10 s.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	began := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("pushgo %v exited with %v after SIGTERM:\n%s", p.cmd.Args[1:], err, p.out.String())
		}
		t.Logf("pushgo %s stopped in %s", p.cmd.Args[1], time.Since(began).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("pushgo %v still running 10s after SIGTERM", p.cmd.Args[1:])
	}
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// TestServeSurvivesRestart stops `pushgo serve` with SIGTERM and starts it again on the same
// data directory: every event and op outcome is still there.
func TestServeSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	p := start(t, "serve", "--data-dir", dir, "--http-addr", addr, "--grpc-addr", "")
	g := &gateway{url: "http://" + addr}
	g.waitReady(t)
	ch := g.channel(t)
	create := createBody(ch, obj{"op_id": "restart-create"})
	ev := g.mustOK(t, "/event/create", create)["event_id"].(string)
	g.mustOK(t, "/event/update", opBody(ch, ev, obj{"op_id": "restart-update"}))
	p.stop(t)

	// Second life: also expose the embedded NATS, and probe health the way a container does.
	addr, natsAddr := freeAddr(t), freeAddr(t)
	p = start(t, "serve", "--data-dir", dir, "--http-addr", addr, "--grpc-addr", "", "--nats-listen", natsAddr)
	g = &gateway{url: "http://" + addr}
	g.waitReady(t)
	if out, err := exec.Command(pushgoBinary(t), "healthcheck", "--http-addr", addr).CombinedOutput(); err != nil {
		t.Fatalf("healthcheck: %v %s", err, out)
	}
	if err := exec.Command(pushgoBinary(t), "healthcheck", "--http-addr", freeAddr(t)).Run(); err == nil {
		t.Fatal("healthcheck of nothing succeeded")
	}
	// The listener takes the auditor's credentials only (auditor_test.go checks what they allow).
	if nc, err := nats.Connect("nats://" + natsAddr); err == nil {
		nc.Close()
		t.Fatal("--nats-listen accepted an anonymous connection")
	}
	nc, err := nats.Connect(auditorURL(t, dir), nats.CustomInboxPrefix(bus.InboxPrefix(bus.RoleAuditor)))
	if err != nil {
		t.Fatalf("--nats-listen: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := js.Stream(t.Context(), "PUSHGO_EVENTS"); err != nil || st.CachedInfo().State.Msgs != 2 {
		t.Fatalf("event store over --nats-listen: %v", err)
	}
	if st := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev}); st["version"] != 2.0 || st["status"] != "progress" {
		t.Fatalf("state after restart = %v", st)
	}
	// The op records survived too: a replay is answered from them, not applied again.
	if d := g.mustOK(t, "/event/create", create); d["event_id"] != ev || d["version"] != 1.0 {
		t.Fatalf("replayed create after restart = %v", d)
	}
	if d := g.mustOK(t, "/event/close", opBody(ch, ev, obj{"event_time": 1713750900000})); d["version"] != 3.0 {
		t.Fatalf("close after restart = %v", d)
	}
	p.stop(t)
}

// TestSeparateProcesses runs each service as its own process (two lifecycle instances) against
// one NATS server, as in a deployment.
func TestSeparateProcesses(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	url := ns.ClientURL()
	addr := freeAddr(t)
	procs := []*proc{
		start(t, "lifecycle", "--nats-url", url),
		start(t, "lifecycle", "--nats-url", url),
		start(t, "dispatch", "--nats-url", url),
		start(t, "ingest", "--nats-url", url, "--http-addr", addr, "--grpc-addr", ""),
	}
	g := &gateway{url: "http://" + addr}
	g.waitReady(t)
	ch := g.channel(t)

	const events = 8
	var wg sync.WaitGroup
	errs := make(chan error, events)
	for i := range events {
		wg.Go(func() {
			r := g.post(t, "/event/create", createBody(ch, obj{"op_id": fmt.Sprint("sep-", i)}))
			if r.status != 200 {
				errs <- fmt.Errorf("create %d: %d %s", i, r.status, r.raw)
				return
			}
			ev := r.data(t)["event_id"].(string)
			for u := range 3 {
				r = g.post(t, "/event/update", opBody(ch, ev, obj{"event_time": 1713750300000 + u}))
				if r.status != 200 || r.data(t)["version"] != float64(u+2) {
					errs <- fmt.Errorf("update %d/%d: %d %s", i, u, r.status, r.raw)
					return
				}
			}
			if r = g.post(t, "/event/close", opBody(ch, ev, obj{"event_time": 1713750400000})); r.status != 200 {
				errs <- fmt.Errorf("close %d: %d %s", i, r.status, r.raw)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d := g.mustOK(t, "/event/list", obj{"channel_id": ch, "password": "secret-123", "event_state": "CLOSED"})
	if n := len(d["events"].([]any)); n != events {
		t.Fatalf("%d closed events, want %d", n, events)
	}
	// Stop intake first, then the backends.
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(t)
	}
}
