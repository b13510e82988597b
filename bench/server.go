package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
)

// server is a `pushgo serve` process under measurement.
type server struct {
	cmd      *exec.Cmd
	dir      string
	keep     bool
	url      string
	pprofURL string
	stopped  bool
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String(), nil
}

// startServer runs pushgo serve (embedded JetStream, file storage, R1) in a fresh data
// directory; extra are more flags. Its broker has no network listener for the bench: the
// inboxes are counted from the store once the server has stopped (inboxCounts), since a
// gateway's NATS admits auditors only, who may not read inboxes.
func startServer(ctx context.Context, o options, extra ...string) (*server, error) {
	dir, err := os.MkdirTemp("", "pushgo-bench-")
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--data-dir", dir, "--http-addr", httpAddr, "--grpc-addr", "",
		"--inbox-per-device", "10000000", "--log-level", "warn"}
	args = append(args, extra...)
	s := &server{dir: dir, keep: o.keep, url: "http://" + httpAddr}
	if o.profile != "" {
		pprofAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		args = append(args, "--pprof-addr", pprofAddr)
		s.pprofURL = "http://" + pprofAddr
	}
	log, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(o.pushgo, args...)
	s.cmd.Env = append(os.Environ(), o.serverEnv...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("pushgo serve not ready after 30s; see " + log.Name())
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		}
	}
	return s, nil
}

// stop ends the server with SIGTERM, as an operator would, and removes its data directory
// (unless -keep).
func (s *server) stop() {
	s.halt()
	if !s.keep {
		_ = os.RemoveAll(s.dir)
	}
}

// halt ends the server and leaves its data directory.
func (s *server) halt() {
	if s.stopped {
		return
	}
	s.stopped = true
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
}

// cpu is the CPU time the server process has used (user + system), from /proc.
func (s *server) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// peakRSS is the server's peak resident set size in bytes (VmHWM).
func (s *server) peakRSS() int64 { return s.status("VmHWM:") }

// rss is the server's resident set size now, in bytes (VmRSS).
func (s *server) rss() int64 { return s.status("VmRSS:") }

// status reads a kB field of /proc/<pid>/status.
func (s *server) status(field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// idleCPU is the share of one core the server uses while nothing is sent, over d.
func (s *server) idleCPU(ctx context.Context, d time.Duration) (float64, error) {
	before := s.cpu()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(s.cpu()-before) / float64(d), nil
}

// inboxCounts stops the server and returns the number of items in every device inbox, read
// from its store with an embedded JetStream server of the bench's own.
func (s *server) inboxCounts(ctx context.Context) (map[string]uint64, error) {
	s.halt()
	ns, err := natsserver.NewServer(&natsserver.Options{JetStream: true, StoreDir: filepath.Join(s.dir, "jetstream"),
		DontListen: true, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(time.Minute) {
		return nil, errors.New("the server's store did not open in a minute")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, bus.StreamInbox)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(bus.InboxSubjects))
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		out[strings.TrimPrefix(subj, "pushgo.inbox.")] = n
	}
	return out, nil
}

// selfCPU is the CPU time the load generator itself has used (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
