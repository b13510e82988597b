// Package natsauth configures an embedded nats-server with the users of bus.Table, and keeps the
// auditor credentials file of pushgo serve (DESIGN.md §9.1).
package natsauth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"pushgo.dev/gateway/proto/bus"
)

// Connection types a user may be limited to (server.User.AllowedConnectionTypes).
const (
	// InProcess: only nats.InProcessServer connections (pushgo serve's own services).
	InProcess = jwt.ConnectionTypeInProcess
	// Network: only plain NATS client connections over TCP.
	Network = jwt.ConnectionTypeStandard
)

// ServerUser returns u as a user of server.Options, with the permissions of its role (none for
// u.Role == "": full access), limited to the given connection types (none: any).
func ServerUser(u bus.User, connectionTypes ...string) (*server.User, error) {
	su := &server.User{Username: u.Name, Password: u.Password}
	if u.Role != "" {
		p, ok := bus.PermissionsOf(u.Role)
		if !ok {
			return nil, fmt.Errorf("user %s: unknown role %q", u.Name, u.Role)
		}
		su.Permissions = &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish, Deny: p.PublishDeny},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe, Deny: p.SubscribeDeny},
		}
		if p.AllowResponses {
			su.Permissions.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS,
				Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
		}
	}
	if len(connectionTypes) > 0 {
		su.AllowedConnectionTypes = map[string]struct{}{}
		for _, t := range connectionTypes {
			su.AllowedConnectionTypes[t] = struct{}{}
		}
	}
	return su, nil
}

// NewPassword returns a random password: 32 hex digits (128 bits), safe in a URL.
func NewPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// AuditorFile is where pushgo serve keeps the auditor's URL under its data directory.
func AuditorFile(dataDir string) string {
	return filepath.Join(dataDir, "credentials", "auditor.url")
}

// AuditorPassword returns the auditor password kept in file (written by WriteAuditorURL), or a
// new one when the file does not exist yet, so the credentials survive restarts.
func AuditorPassword(file string) (string, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return NewPassword()
	}
	if err != nil {
		return "", fmt.Errorf("auditor credentials: %w", err)
	}
	u, err := url.Parse(strings.TrimSpace(string(b)))
	if err != nil || u.User == nil {
		return "", fmt.Errorf("auditor credentials: %s is not a nats://auditor:<password>@host:port URL", file)
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" || u.User.Username() != string(bus.RoleAuditor) {
		return "", fmt.Errorf("auditor credentials: %s is not a nats://auditor:<password>@host:port URL", file)
	}
	return pw, nil
}

// WriteAuditorURL writes the auditor URL of the listener at addr (its actual address; an
// unspecified host becomes 127.0.0.1) into file: one line nats://auditor:<password>@<host>:<port>,
// mode 0600 in a 0700 directory.
func WriteAuditorURL(file, password string, addr net.Addr) error {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return fmt.Errorf("auditor credentials: %w", err)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	line := (&url.URL{Scheme: "nats", User: url.UserPassword(string(bus.RoleAuditor), password), Host: net.JoinHostPort(host, port)}).String()
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("auditor credentials: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("auditor credentials: %w", err)
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(line+"\n"), 0o600); err != nil {
		return fmt.Errorf("auditor credentials: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("auditor credentials: %w", err)
	}
	return nil
}
