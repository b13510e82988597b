// Package bustest starts real embedded JetStream servers for tests: every integration test runs
// against its own server with a random port and a temporary store.
package bustest

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/natsauth"
)

// RunServer starts an embedded JetStream server on a random loopback port with its store in a
// fresh temporary directory, and shuts it down when the test ends.
func RunServer(tb testing.TB) *server.Server {
	tb.Helper()
	return RunServerAt(tb, tb.TempDir(), -1)
}

// RunServerAt starts an embedded JetStream server with its store in dir, listening on port
// (-1 for a random one). Tests of restarts call it twice with the same dir.
func RunServerAt(tb testing.TB, dir string, port int) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		tb.Fatalf("new nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready after 10s")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect connects to s and closes the connection when the test ends.
func Connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Provisioned starts a server, connects to it and provisions the streams and buckets.
func Provisioned(tb testing.TB) (*server.Server, *nats.Conn, jetstream.JetStream) {
	tb.Helper()
	s := RunServer(tb)
	nc := Connect(tb, s)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	if err := bus.Provision(tb.Context(), js, bus.Options{}); err != nil {
		tb.Fatalf("provision: %v", err)
	}
	return s, nc, js
}

// AdminUser is the full-access user of RunSecured; connections without credentials are it.
const AdminUser = "admin"

// RolePassword is the password of a role's user on a RunSecured server.
func RolePassword(r bus.Role) string { return "test-" + string(r) }

// RunSecured starts an embedded JetStream server like RunServer whose users are the roles of
// bus.Table (password RolePassword) plus AdminUser with full access, which is also what a
// connection without credentials gets, so that tests keep reading and writing everything.
func RunSecured(tb testing.TB) *server.Server {
	tb.Helper()
	users := []*server.User{{Username: AdminUser, Password: "test-admin"}}
	for _, r := range bus.Roles {
		u, err := natsauth.ServerUser(bus.User{Name: string(r), Password: RolePassword(r), Role: r})
		if err != nil {
			tb.Fatal(err)
		}
		users = append(users, u)
	}
	s, err := server.NewServer(&server.Options{
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		NoLog:      true,
		NoSigs:     true,
		Users:      users,
		NoAuthUser: AdminUser,
	})
	if err != nil {
		tb.Fatalf("new nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready after 10s")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Violations records the permission violations the server reported to a connection.
type Violations struct {
	mu   sync.Mutex
	errs []string
}

// Add records err when it is a permission violation.
func (v *Violations) Add(err error) {
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

// All returns every violation so far.
func (v *Violations) All() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.errs)
}

// Has reports whether a violation naming subject was recorded.
func (v *Violations) Has(subject string) bool {
	for _, e := range v.All() {
		if strings.Contains(e, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// ConnectRole connects to a RunSecured server as role r, with the role's inbox prefix, and
// records the permission violations the server reports. The connection closes when the test
// ends.
func ConnectRole(tb testing.TB, s *server.Server, r bus.Role) (*nats.Conn, *Violations) {
	tb.Helper()
	v := &Violations{}
	nc, err := nats.Connect(s.ClientURL(), RoleOptions(r, v)...)
	if err != nil {
		tb.Fatalf("connect as %s: %v", r, err)
	}
	tb.Cleanup(nc.Close)
	return nc, v
}

// RoleOptions are the connection options of role r on a RunSecured server; violations are
// recorded in v.
func RoleOptions(r bus.Role, v *Violations) []nats.Option {
	return []nats.Option{nats.UserInfo(string(r), RolePassword(r)), nats.CustomInboxPrefix(bus.InboxPrefix(r)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { v.Add(err) })}
}

// Eventually polls cond every 5 ms until it holds, failing the test when d passes first (the
// tests wait for what they expect with a deadline, never a sleep).
func Eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-tb.Context().Done():
			tb.Fatal(tb.Context().Err())
		}
	}
}

// RunCluster starts a 3-node JetStream cluster of embedded servers n0, n1 and n2 on loopback,
// routed to each other, each with its store in a temporary directory, and shuts them down
// when the test ends (a test may shut one down earlier to kill a node).
func RunCluster(tb testing.TB, name string) []*server.Server {
	tb.Helper()
	// Routes need the cluster ports up front: take three free ones.
	var ports []int
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		_ = l.Close()
	}
	var servers []*server.Server
	for i, p := range ports {
		var routes []string
		for j, q := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", q))
			}
		}
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   tb.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: name, Host: "127.0.0.1", Port: p},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			tb.Fatalf("new nats server: %v", err)
		}
		tb.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		go s.Start()
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			tb.Fatalf("%s not ready after 10s", s.Name())
		}
	}
	return servers
}
