// Package deploygen writes the certificates, credentials and NATS configuration of the
// deploy/compose.yaml cluster (DESIGN.md §9.1) into one directory, from Go code alone: `make
// deploy-secrets` runs it as `pushgo deploy-secrets`. Nothing it writes is committed.
//
// Layout of the directory (Generate):
//
//	ca.pem, ca-key.pem            the deployment's CA (ECDSA P-256, 10 years)
//	nats/<node>.pem, -key.pem     each NATS node's certificate (server and client auth, for
//	                              routes), SANs <node>, localhost, 127.0.0.1; signed by the CA
//	nats/ca.pem                   the CA, for route verification
//	nats/<node>.conf              the node's nats-server configuration (TLS on client and route
//	                              connections, JetStream in /data)
//	nats/users.conf               the users with their permissions (bus.Table), bcrypt hashes
//	<user>/password               each user's password (ingest, lifecycle, dispatch, auditor,
//	                              admin); <user>/ca.pem beside it: a service container mounts
//	                              its own directory only
//	log/log-ed25519.pem, .pub.pem the event log's signing key pair (proto/logsign); the
//	                              private key is copied to lifecycle/ only, the public key to
//	                              every user's directory
//	secrets.key                   the key sealing webhook secrets at rest (proto/secretbox),
//	                              copied to ingest/ and dispatch/
//
// Secrets and certificates are kept when they exist (the function is idempotent; delete a file
// to have it made again); the configuration files are rewritten on every run, so a change of
// the permission table reaches the next cluster start. Each artefact has its own function, so a
// new one (a log-signing key, a secrets key) is one more function called from Generate.
package deploygen

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/natsauth"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/secretbox"
)

// Nodes are the NATS nodes of deploy/compose.yaml (and of the cluster test suite).
var Nodes = []string{"nats1", "nats2", "nats3"}

// AdminUser has full access: for operators' tools (nats CLI) and the cluster test suite, never
// for a service.
const AdminUser = "admin"

// Users are the NATS users generated: one per role of bus.Table, and AdminUser.
func Users() []bus.User {
	var us []bus.User
	for _, r := range bus.Roles {
		us = append(us, bus.User{Name: string(r), Role: r})
	}
	return append(us, bus.User{Name: AdminUser})
}

// Validity of generated certificates.
const (
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 2 * 365 * 24 * time.Hour
)

// Modes: the directory is the operator's alone; a service's own directory and files are
// readable by the container's unprivileged user, which reads them through a bind mount (the
// parent directory's 0700 still keeps other local users out).
const (
	dirMode    = 0o700
	mountDir   = 0o755
	publicFile = 0o644
	secretFile = 0o600
)

// Generate writes (or completes) the deployment directory dir.
func Generate(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return err
	}
	ca, caKey, err := ensureCA(dir)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return err
	}
	natsDir := filepath.Join(dir, "nats")
	if err := os.MkdirAll(natsDir, mountDir); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(natsDir, "ca.pem"), caPEM, publicFile); err != nil {
		return err
	}
	for _, node := range Nodes {
		if err := ensureServerCert(natsDir, node, ca, caKey); err != nil {
			return err
		}
		if err := writeNodeConfig(natsDir, node); err != nil {
			return err
		}
	}
	users := Users()
	for i, u := range users {
		pw, err := ensurePassword(dir, u.Name, caPEM)
		if err != nil {
			return err
		}
		users[i].Password = pw
	}
	if err := writeUsersConfig(natsDir, users); err != nil {
		return err
	}
	if err := ensureLogKeys(dir, users); err != nil {
		return err
	}
	return ensureSecretsKey(dir)
}

// ensureLogKeys makes the log's key pair once, and gives lifecycle the private key and every
// user the public one.
func ensureLogKeys(dir string, users []bus.User) error {
	logDir := filepath.Join(dir, "log")
	priv, pub, err := logsign.EnsureKeyPair(logDir)
	if err != nil {
		return err
	}
	privPEM, err := os.ReadFile(priv)
	if err != nil {
		return err
	}
	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		return err
	}
	// The container's unprivileged user reads it through the bind mount; the 0700 of dir
	// keeps other local users out, as for the passwords.
	if err := writeFile(filepath.Join(dir, string(bus.RoleLifecycle), "log-ed25519.pem"), privPEM, publicFile); err != nil {
		return err
	}
	for _, u := range users {
		if err := writeFile(filepath.Join(dir, u.Name, "log-ed25519.pub.pem"), pubPEM, publicFile); err != nil {
			return err
		}
	}
	return nil
}

// ensureSecretsKey makes the secrets key once and gives it to ingest and dispatch.
func ensureSecretsKey(dir string) error {
	path := filepath.Join(dir, "secrets.key")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := secretbox.GenerateKeyFile(path); err != nil {
			return err
		}
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, r := range []bus.Role{bus.RoleIngest, bus.RoleDispatch} {
		if err := writeFile(filepath.Join(dir, string(r), "secrets.key"), key, publicFile); err != nil {
			return err
		}
	}
	return nil
}

// ensureCA loads the CA, or makes one.
func ensureCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if cert, key, err := loadPair(certFile, keyFile); err == nil {
		return cert, key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("CA: %w", err)
	}
	if cert, err := loadCert(certFile); err == nil {
		return cert, nil, nil // an operator's own CA without its key: the node certificates must be theirs too
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "PushGo deployment CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(certFile, keyFile, der, key); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// ensureServerCert makes node's certificate unless it exists: server and client auth (a route
// dials with it), for the node's compose host name, localhost and 127.0.0.1.
func ensureServerCert(natsDir, node string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	certFile, keyFile := filepath.Join(natsDir, node+".pem"), filepath.Join(natsDir, node+"-key.pem")
	if _, _, err := loadPair(certFile, keyFile); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s certificate: %w", node, err)
	}
	if caKey == nil {
		return fmt.Errorf("%s certificate: %s and its key are needed: ca.pem has no ca-key.pem to sign one", node, certFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: node},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{node, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(certFile, keyFile, der, key)
}

// ensurePassword returns user's password from <dir>/<user>/password, making it first if needed,
// and puts the CA beside it.
func ensurePassword(dir, user string, caPEM []byte) (string, error) {
	udir := filepath.Join(dir, user)
	if err := os.MkdirAll(udir, mountDir); err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(udir, "ca.pem"), caPEM, publicFile); err != nil {
		return "", err
	}
	file := filepath.Join(udir, "password")
	if b, err := os.ReadFile(file); err == nil {
		if pw := strings.TrimSpace(string(b)); pw != "" {
			return pw, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	pw, err := natsauth.NewPassword()
	if err != nil {
		return "", err
	}
	return pw, writeFile(file, []byte(pw+"\n"), publicFile)
}

// writeUsersConfig renders nats/users.conf: every user with a bcrypt hash of its password.
func writeUsersConfig(natsDir string, users []bus.User) error {
	hashed := make([]bus.User, len(users))
	for i, u := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.DefaultCost)
		if err != nil {
			return err
		}
		hashed[i] = u
		hashed[i].Password = string(h)
	}
	conf, err := bus.ServerConfigUsers(hashed)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(natsDir, "users.conf"), []byte(header+conf), secretFile)
}

const header = "# Generated by `pushgo deploy-secrets` (make deploy-secrets) from bus.Table; rewritten on every run.\n"

// NodeConfig is the nats-server configuration of node, with its files under /etc/nats.
func NodeConfig(node string) string {
	var routes []string
	for _, n := range Nodes {
		routes = append(routes, fmt.Sprintf("%q", "nats://"+n+":6222"))
	}
	return header + fmt.Sprintf(`server_name: %[1]s
listen: "0.0.0.0:4222"
jetstream { store_dir: "/data" }
# Clients: TLS with this node's certificate; they authenticate with user and password.
tls {
  cert_file: "/etc/nats/%[1]s.pem"
  key_file: "/etc/nats/%[1]s-key.pem"
  timeout: 5
}
cluster {
  name: pushgo
  listen: "0.0.0.0:6222"
  routes: [%[2]s]
  # Routes learnt from the other nodes are dialled at this address: the host name the
  # certificates name, not the container's IP, which they do not.
  advertise: "%[1]s:6222"
  # Clients keep to the URLs they were given (the nodes' host names, which the certificates name).
  no_advertise: true
  # Routes: mutual TLS, each node presents its certificate and verifies the peer's against the CA.
  tls {
    cert_file: "/etc/nats/%[1]s.pem"
    key_file: "/etc/nats/%[1]s-key.pem"
    ca_file: "/etc/nats/ca.pem"
    verify: true
    timeout: 5
  }
}
include "users.conf"
`, node, strings.Join(routes, ", "))
}

func writeNodeConfig(natsDir, node string) error {
	return writeFile(filepath.Join(natsDir, node+".conf"), []byte(NodeConfig(node)), publicFile)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func loadCert(certFile string) (*x509.Certificate, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(cb)
	if block == nil {
		return nil, fmt.Errorf("%s is not PEM", certFile)
	}
	return x509.ParseCertificate(block.Bytes)
}

// loadPair loads a certificate and its key. An operator's own node key may be of any type the
// server takes; only a CA key must be ECDSA (it signs here), so a non-EC key counts as present.
func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := loadCert(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(kb)
	if block == nil {
		return nil, nil, fmt.Errorf("%s is not PEM", keyFile)
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		k, perr := x509.ParsePKCS8PrivateKey(block.Bytes)
		if perr != nil {
			return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return cert, nil, nil
		}
		key = ec
	}
	return cert, key, nil
}

func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), secretFile); err != nil {
		return err
	}
	return writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), publicFile)
}

// writeFile writes b with mode, unless the file already holds b.
func writeFile(name string, b []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, b) {
		return os.Chmod(name, mode)
	}
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
