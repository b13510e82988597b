package deploygen

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/secretbox"
)

// A second run keeps every secret and certificate.
func TestGenerateIsIdempotent(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "generated")
	if err := Generate(dir); err != nil {
		t.Fatal(err)
	}
	kept := []string{"ca.pem", "ca-key.pem", "nats/nats1.pem", "nats/nats1-key.pem", "nats/nats3.pem", "ingest/password", "admin/password", "auditor/password",
		"log/log-ed25519.pem", "lifecycle/log-ed25519.pem", "auditor/log-ed25519.pub.pem", "secrets.key", "dispatch/secrets.key"}
	before := map[string]string{}
	for _, f := range kept {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = string(b)
	}
	if err := Generate(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range kept {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != before[f] {
			t.Errorf("%s changed on the second run", f)
		}
	}
	for f, want := range map[string]os.FileMode{".": 0o700, "ca-key.pem": 0o600, "nats/nats2-key.pem": 0o600, "nats/users.conf": 0o600, "ingest": 0o755, "ingest/password": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %o, want %o", f, fi.Mode().Perm(), want)
		}
	}
	// The log's private key reaches lifecycle only, its public key every user; the secrets key
	// ingest and dispatch only, the same for both.
	signer, err := logsign.LoadSigner(filepath.Join(dir, "lifecycle", "log-ed25519.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range Users() {
		keys, err := logsign.LoadPublicKeys(filepath.Join(dir, u.Name, "log-ed25519.pub.pem"))
		if err != nil || len(keys) != 1 || logsign.KeyID(keys[0]) != signer.ID() {
			t.Fatalf("%s: public log key %v %v, want %s", u.Name, keys, err, signer.ID())
		}
		_, privErr := os.Stat(filepath.Join(dir, u.Name, "log-ed25519.pem"))
		if (privErr == nil) != (u.Name == "lifecycle") {
			t.Errorf("%s holds the private log key: %v", u.Name, privErr == nil)
		}
		_, keyErr := os.Stat(filepath.Join(dir, u.Name, "secrets.key"))
		if (keyErr == nil) != (u.Name == "ingest" || u.Name == "dispatch") {
			t.Errorf("%s holds the secrets key: %v", u.Name, keyErr == nil)
		}
	}
	a, _ := os.ReadFile(filepath.Join(dir, "ingest", "secrets.key"))
	b, _ := os.ReadFile(filepath.Join(dir, "dispatch", "secrets.key"))
	if _, err := secretbox.ParseKey(a); err != nil || string(a) != string(b) {
		t.Fatalf("secrets keys of ingest and dispatch: %v, equal %v", err, string(a) == string(b))
	}
	// The node certificates name the node and the loopback, and the CA signed them.
	cert := readCert(t, filepath.Join(dir, "nats", "nats2.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, filepath.Join(dir, "ca.pem")))
	for _, name := range []string{"nats2", "localhost", "127.0.0.1"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("nats2 certificate for %s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "nats1", Roots: pool}); err == nil {
		t.Error("nats2's certificate is valid for nats1")
	}
}

func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s is not PEM", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A node started from the generated configuration takes TLS clients with the generated users
// only, and gives them their roles' permissions.
func TestGeneratedNodeConfig(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "generated")
	if err := Generate(dir); err != nil {
		t.Fatal(err)
	}
	natsDir := filepath.Join(dir, "nats")
	conf, err := os.ReadFile(filepath.Join(natsDir, "nats1.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// The same file, with its paths and addresses moved to this test's.
	local := strings.NewReplacer("/etc/nats/", natsDir+"/", `"/data"`, `"`+t.TempDir()+`"`,
		`"0.0.0.0:4222"`, `"127.0.0.1:-1"`, `"0.0.0.0:6222"`, `"127.0.0.1:-1"`).Replace(string(conf))
	file := filepath.Join(natsDir, "local.conf")
	if err := os.WriteFile(file, []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server rejects the generated configuration: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	// A client's first PING comes 2 s after it connects unless this is set; checking a bcrypt
	// password under -race on a busy machine can take longer, and nats.go then reads that PING
	// where it expects the PONG of its CONNECT ("expected 'PONG', got 'PING'").
	opts.DisableShortFirstPing = true
	opts.Routes = nil      // the other nodes do not exist here
	opts.JetStream = false // a lone node of a cluster would wait for its peers; JetStream is not what this test checks
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := strings.Replace(s.ClientURL(), "nats://", "tls://", 1)
	ca := nats.RootCAs(filepath.Join(dir, "ingest", "ca.pem"))
	// The server checks each password with bcrypt, which under -race on a busy machine takes
	// longer than nats.go's default 2 s connect timeout.
	slow := nats.Timeout(time.Minute)
	pw := func(user string) string {
		b, err := os.ReadFile(filepath.Join(dir, user, "password"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if nc, err := nats.Connect(url, ca, slow); err == nil {
		nc.Close()
		t.Error("anonymous TLS connection accepted")
	}
	if nc, err := nats.Connect(url, ca, slow, nats.UserInfo("ingest", pw("dispatch"))); err == nil {
		nc.Close()
		t.Error("ingest accepted with dispatch's password")
	}
	if nc, err := nats.Connect(strings.Replace(url, "tls://", "nats://", 1), slow, nats.UserInfo("ingest", pw("ingest"))); err == nil {
		nc.Close()
		t.Error("connection without TLS accepted")
	}
	violations := make(chan error, 10)
	nc, err := nats.Connect(url, ca, slow, nats.UserInfo("ingest", pw("ingest")), nats.CustomInboxPrefix(bus.InboxPrefix(bus.RoleIngest)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatalf("ingest over TLS: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish(bus.EventSubject("ch", "ev"), nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-violations:
		if !strings.Contains(err.Error(), bus.EventSubject("ch", "ev")) {
			t.Errorf("ingest publishing to the log: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("ingest published to the log without a permission violation")
	}
	admin, err := nats.Connect(url, ca, slow, nats.UserInfo(AdminUser, pw(AdminUser)))
	if err != nil {
		t.Fatalf("admin over TLS: %v", err)
	}
	admin.Close()
}
