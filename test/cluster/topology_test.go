package cluster

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	mobynet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"pushgo.dev/gateway/proto/bus"
)

// Images built by `make images`.
const (
	imagePushgo = "pushgo:dev"
	imageNATS   = "pushgo-nats:dev"
)

var natsNodes = []string{"nats1", "nats2", "nats3"}

// cluster is the deployment under test.
type cluster struct {
	t      *testing.T
	nw     *testcontainers.DockerNetwork
	docker *testcontainers.DockerClient
	nats   map[string]*testcontainers.DockerContainer
	ingest []*testcontainers.DockerContainer
	life   []*testcontainers.DockerContainer
	disp   []*testcontainers.DockerContainer

	secrets secrets
}

// adminUser is the full-access user of deploy/generated: this suite's own connections (stream
// leaders, consumer state, the event store and inboxes it verifies) use it; services never do.
const adminUser = "admin"

// secrets are what `make deploy-secrets` generated.
type secrets struct {
	dir           string
	adminPassword string
}

func loadSecrets(t *testing.T) secrets {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "deploy", "generated"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, adminUser, "password"))
	if err != nil {
		t.Fatalf("the cluster's certificates and credentials: %v (run `make deploy-secrets`; `make test-cluster` does)", err)
	}
	return secrets{dir: dir, adminPassword: strings.TrimSpace(string(b))}
}

// loopbackPorts publishes the given container ports on 127.0.0.1 only, on random host ports.
func loopbackPorts(ports ...string) testcontainers.CustomizeRequestOption {
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		hc.PublishAllPorts = false
		hc.PortBindings = mobynet.PortMap{}
		for _, p := range ports {
			port, err := mobynet.ParsePort(p)
			if err != nil {
				panic(err)
			}
			hc.PortBindings[port] = []mobynet.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
		}
	})
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	ctx := t.Context()
	c := &cluster{t: t, nats: map[string]*testcontainers.DockerContainer{}}
	var err error
	c.docker, err = testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.docker.Close() })
	c.nw, err = network.New(ctx)
	testcontainers.CleanupNetwork(t, c.nw)
	if err != nil {
		t.Fatal(err)
	}
	c.secrets = loadSecrets(t)
	for _, name := range natsNodes {
		// The configuration of deploy/compose.yaml (make deploy-secrets): TLS on client and
		// route connections, the users of the permission table.
		var files []testcontainers.ContainerFile
		for _, f := range []string{name + ".conf", "users.conf", "ca.pem", name + ".pem", name + "-key.pem"} {
			files = append(files, testcontainers.ContainerFile{HostFilePath: filepath.Join(c.secrets.dir, "nats", f),
				ContainerFilePath: "/etc/nats/" + f, FileMode: 0o400})
		}
		ctr, err := testcontainers.Run(ctx, imageNATS,
			network.WithNetwork([]string{name}, c.nw),
			testcontainers.WithFiles(files...),
			testcontainers.WithCmd("-c", "/etc/nats/"+name+".conf"),
			testcontainers.WithExposedPorts("4222/tcp"),
			loopbackPorts("4222/tcp"),
			testcontainers.WithWaitStrategy(wait.ForLog("Server is ready").WithStartupTimeout(time.Minute)),
		)
		testcontainers.CleanupContainer(t, ctr)
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		c.nats[name] = ctr
	}
	c.waitHealthy(2 * time.Minute)

	env := map[string]string{
		"PUSHGO_NATS_URL":           "tls://nats1:4222,tls://nats2:4222,tls://nats3:4222",
		"PUSHGO_NATS_PASSWORD_FILE": "/run/pushgo/password",
		"PUSHGO_NATS_CA_FILE":       "/run/pushgo/ca.pem",
		// As in deploy/compose.yaml: each service reads the variables of its own flags.
		"PUSHGO_LOG_KEY_FILE":     "/run/pushgo/log-ed25519.pem",
		"PUSHGO_LOG_PUBLIC_KEYS":  "/run/pushgo/log-ed25519.pub.pem",
		"PUSHGO_SECRETS_KEY_FILE": "/run/pushgo/secrets.key",
		"PUSHGO_REPLICAS":         "3",
		"PUSHGO_PARTITIONS":       fmt.Sprint(partitions),
		"PUSHGO_LOG_FORMAT":       "json",
		// The load sets up 20 channels and 40 devices from one address at once; the other
		// limits of a public gateway stay at their defaults.
		"PUSHGO_CREATES_PER_MINUTE": "0",
	}
	service := func(args []string, opts ...testcontainers.ContainerCustomizer) *testcontainers.DockerContainer {
		t.Helper()
		// Each service gets its own user's password and the CA, as its compose mount does.
		role := args[0]
		var files []testcontainers.ContainerFile
		for _, f := range []string{"password", "ca.pem", "log-ed25519.pub.pem", "log-ed25519.pem", "secrets.key"} {
			if _, err := os.Stat(filepath.Join(c.secrets.dir, role, f)); err == nil { // the role's own files only
				files = append(files, testcontainers.ContainerFile{HostFilePath: filepath.Join(c.secrets.dir, role, f), ContainerFilePath: "/run/pushgo/" + f, FileMode: 0o444})
			}
		}
		all := append([]testcontainers.ContainerCustomizer{
			network.WithNetwork(nil, c.nw),
			testcontainers.WithEnv(env),
			testcontainers.WithCmd(args...),
			testcontainers.WithFiles(files...),
		}, opts...)
		ctr, err := testcontainers.Run(ctx, imagePushgo, all...)
		testcontainers.CleanupContainer(t, ctr)
		if err != nil {
			t.Fatalf("start pushgo %v: %v", args, err)
		}
		return ctr
	}
	for range 2 {
		c.life = append(c.life, service([]string{"lifecycle"}))
		c.disp = append(c.disp, service([]string{"dispatch"}))
		c.ingest = append(c.ingest, service([]string{"ingest", "--http-addr", "0.0.0.0:6666", "--grpc-addr", ""},
			testcontainers.WithExposedPorts("6666/tcp"), loopbackPorts("6666/tcp"),
			testcontainers.WithWaitStrategy(wait.ForHTTP("/readyz").WithPort("6666/tcp").WithStartupTimeout(2*time.Minute))))
	}
	if dir := os.Getenv("PUSHGO_CLUSTER_LOGS"); dir != "" {
		t.Cleanup(func() { c.saveLogs(dir) }) // registered last, so it runs before the containers go
	}
	return c
}

// saveLogs writes every container's log to dir/<role>.log.
func (c *cluster) saveLogs(dir string) {
	_ = os.MkdirAll(dir, 0o755)
	all := map[string]*testcontainers.DockerContainer{}
	for name, ctr := range c.nats {
		all[name] = ctr
	}
	for i := range c.ingest {
		all[fmt.Sprint("ingest", i+1)], all[fmt.Sprint("lifecycle", i+1)], all[fmt.Sprint("dispatch", i+1)] = c.ingest[i], c.life[i], c.disp[i]
	}
	for name, ctr := range all {
		rc, err := ctr.Logs(context.WithoutCancel(c.t.Context()))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(rc)
		_ = rc.Close()
		_ = os.WriteFile(filepath.Join(dir, name+".log"), b, 0o644)
	}
}

// ingestURLs are the base URLs of the ingest replicas.
func (c *cluster) ingestURLs() []string {
	var urls []string
	for _, ctr := range c.ingest {
		ep, err := ctr.PortEndpoint(c.t.Context(), "6666/tcp", "http")
		if err != nil {
			c.t.Fatal(err)
		}
		urls = append(urls, ep)
	}
	return urls
}

// natsURLs are the client URLs of the nodes that are up, from the host.
func (c *cluster) natsURLs() string {
	var urls []string
	for _, name := range natsNodes {
		if ep, err := c.nats[name].PortEndpoint(c.t.Context(), "4222/tcp", "nats"); err == nil {
			urls = append(urls, ep)
		}
	}
	return strings.Join(urls, ",")
}

// connectAuditor connects as the auditor of deploy/generated, as `pushgo audit` does.
func (c *cluster) connectAuditor() (*nats.Conn, error) {
	b, err := os.ReadFile(filepath.Join(c.secrets.dir, string(bus.RoleAuditor), "password"))
	if err != nil {
		return nil, err
	}
	return nats.Connect(c.natsURLs(), nats.UserInfo(string(bus.RoleAuditor), strings.TrimSpace(string(b))),
		nats.RootCAs(filepath.Join(c.secrets.dir, "ca.pem")), nats.CustomInboxPrefix(bus.InboxPrefix(bus.RoleAuditor)))
}

// connect opens a NATS connection to the nodes that are up, from the host.
func (c *cluster) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(c.natsURLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.UserInfo(adminUser, c.secrets.adminPassword), nats.RootCAs(filepath.Join(c.secrets.dir, "ca.pem")))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// leader returns the node that leads a stream.
func (c *cluster) leader(stream string) (string, error) {
	nc, js, err := c.connect()
	if err != nil {
		return "", err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(c.t.Context(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info := st.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("%s has no leader", stream)
	}
	return info.Cluster.Leader, nil
}

// waitHealthy polls until the meta group and every existing stream have a leader and all
// replicas current.
func (c *cluster) waitHealthy(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		if last = c.healthy(); last == nil {
			return
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-c.t.Context().Done():
			c.t.Fatal(c.t.Context().Err())
		}
	}
	c.t.Fatalf("cluster not healthy after %s: %v", within, last)
}

func (c *cluster) healthy() error {
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(c.t.Context(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return err
	}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		cl := st.CachedInfo().Cluster
		if cl == nil || cl.Leader == "" {
			return fmt.Errorf("stream %s has no leader", name)
		}
		for _, r := range cl.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("stream %s: replica %s not current", name, r.Name)
			}
		}
	}
	return names.Err()
}

// kill stops a container with SIGKILL, as a crash would.
func (c *cluster) kill(ctr *testcontainers.DockerContainer) {
	c.t.Helper()
	if _, err := c.docker.ContainerKill(c.t.Context(), ctr.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		c.t.Fatalf("kill: %v", err)
	}
}

func (c *cluster) start(ctr *testcontainers.DockerContainer) {
	c.t.Helper()
	if err := ctr.Start(c.t.Context()); err != nil {
		c.t.Fatalf("start: %v", err)
	}
}

// disconnect cuts a NATS node off the cluster network; reconnect puts it back under its alias.
func (c *cluster) disconnect(name string) {
	c.t.Helper()
	if _, err := c.docker.NetworkDisconnect(c.t.Context(), c.nw.ID, client.NetworkDisconnectOptions{Container: c.nats[name].GetContainerID(), Force: true}); err != nil {
		c.t.Fatalf("disconnect %s: %v", name, err)
	}
}

func (c *cluster) reconnect(name string) {
	c.t.Helper()
	_, err := c.docker.NetworkConnect(c.t.Context(), c.nw.ID, client.NetworkConnectOptions{Container: c.nats[name].GetContainerID(),
		EndpointConfig: &mobynet.EndpointSettings{Aliases: []string{name}}})
	if err != nil {
		c.t.Fatalf("reconnect %s: %v", name, err)
	}
}

// vacate moves every leadership node holds to another node, except those of the streams in
// keep and of their consumers: other streams (the inboxes, the outcome journal, the buckets,
// other partitions) and the durable consumers of other streams. Those streams are shared by
// every partition, so while their leader is away every partition waits for an election; an
// operator moves them off a node before taking it down, and the fault suite does the same
// before it kills one partition's leader. The meta leader is not moved (that needs the system
// account); it serves the JetStream API, not publishes, gets or pulls.
func (c *cluster) vacate(node string, keep ...string) {
	c.t.Helper()
	nc, js, err := c.connect()
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	stepDown := func(subject, preferred string) {
		body := fmt.Sprintf(`{"placement":{"preferred":%q}}`, preferred)
		if _, err := nc.Request(subject, []byte(body), 5*time.Second); err != nil {
			c.t.Logf("vacate %s: %s: %v", node, subject, err)
		}
	}
	other := func(replicas []*jetstream.PeerInfo) string {
		for _, r := range replicas {
			if r.Name != node && r.Current && !r.Offline {
				return r.Name
			}
		}
		return ""
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var held []string
		ctx, cancel := context.WithTimeout(c.t.Context(), 10*time.Second)
		names := js.StreamNames(ctx)
		for name := range names.Name() {
			if slices.Contains(keep, name) {
				continue
			}
			st, err := js.Stream(ctx, name)
			if err != nil {
				held = append(held, name+": "+err.Error())
				continue
			}
			if cl := st.CachedInfo().Cluster; cl != nil && cl.Leader == node {
				held = append(held, name)
				if to := other(cl.Replicas); to != "" {
					stepDown("$JS.API.STREAM.LEADER.STEPDOWN."+name, to)
				}
			}
			cons := st.ListConsumers(ctx)
			for info := range cons.Info() {
				if cl := info.Cluster; info.Config.Durable != "" && cl != nil && cl.Leader == node && len(cl.Replicas) > 0 {
					held = append(held, name+"/"+info.Name)
					if to := other(cl.Replicas); to != "" {
						stepDown("$JS.API.CONSUMER.LEADER.STEPDOWN."+name+"."+info.Name, to)
					}
				}
			}
		}
		cancel()
		if len(held) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s still leads %v after a minute", node, held)
		}
		select {
		case <-time.After(time.Second):
		case <-c.t.Context().Done():
			c.t.Fatal(c.t.Context().Err())
		}
	}
}
