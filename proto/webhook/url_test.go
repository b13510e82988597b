package webhook

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeResolver answers from a fixed table and counts lookups. Unknown names are NXDOMAIN.
type fakeResolver struct {
	hosts   map[string][]string
	lookups atomic.Int64
}

func (r *fakeResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	r.lookups.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ips, ok := r.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, s := range ips {
		ip, zone, _ := strings.Cut(s, "%")
		out = append(out, net.IPAddr{IP: net.ParseIP(ip), Zone: zone})
	}
	return out, nil
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{hosts: map[string][]string{
		"localhost":             {"127.0.0.1", "::1"},
		"public.example":        {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
		"public4.example":       {"93.184.216.34"},
		"mixed.example":         {"93.184.216.34", "8.8.8.8", "10.0.0.7", "1.1.1.1"},
		"mapped.example":        {"::ffff:192.168.1.1"},
		"metadata.example":      {"169.254.169.254"},
		"linklocal6.example":    {"fe80::1%eth0"},
		"empty.example":         {},
		"nat64.example":         {"64:ff9b::a00:1"},
		"public-mapped.test":    {"::ffff:8.8.8.8"},
		"xn--bcher-kva.example": {"93.184.216.34"},
		"zoned-global.example":  {"2606:4700:4700::1111%eth0"},
		"123.public.example":    {"93.184.216.34"},
		"public.example.":       {"93.184.216.34"},
	}}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	long := "https://public.example/" + strings.Repeat("a", 2048-len("https://public.example/"))
	longRunes := "https://public.example/" + strings.Repeat("é", 2048-len("https://public.example/"))

	tests := []struct {
		name         string
		url          string
		allowPrivate bool
		want         error // nil, ErrInvalidURL or ErrPrivateAddress
	}{
		// Shape.
		{name: "relative", url: "/hook", want: ErrInvalidURL},
		{name: "scheme-relative", url: "//public.example/hook", want: ErrInvalidURL},
		{name: "no scheme", url: "public.example/hook", want: ErrInvalidURL},
		{name: "empty", url: "", want: ErrInvalidURL},
		{name: "ftp", url: "ftp://public.example/hook", want: ErrInvalidURL},
		{name: "javascript", url: "javascript:alert(1)", want: ErrInvalidURL},
		{name: "opaque", url: "http:public.example", want: ErrInvalidURL},
		{name: "empty host", url: "http:///hook", want: ErrInvalidURL},
		{name: "port only", url: "http://:8080/hook", want: ErrInvalidURL},
		{name: "user info", url: "https://user:pass@public.example/hook", want: ErrInvalidURL},
		{name: "user only", url: "https://user@public.example/hook", want: ErrInvalidURL},
		{name: "too long", url: long + "a", want: ErrInvalidURL},
		{name: "too long in characters", url: longRunes + "é", want: ErrInvalidURL},
		{name: "port zero", url: "http://public.example:0/", want: ErrInvalidURL},
		{name: "port too big", url: "http://public.example:65536/", want: ErrInvalidURL},
		{name: "bad bracket", url: "http://[::1/", want: ErrInvalidURL},
		{name: "control char", url: "http://public.example/\x7f\n", want: ErrInvalidURL},
		{name: "decimal IPv4", url: "http://2130706433/", want: ErrInvalidURL},
		{name: "short IPv4", url: "http://127.1/", want: ErrInvalidURL},
		{name: "hex IPv4", url: "http://0x7f.0.0.1/", want: ErrInvalidURL},
		{name: "five octets", url: "http://1.2.3.4.5/", want: ErrInvalidURL},
		{name: "does not resolve", url: "https://nxdomain.example/hook", want: ErrInvalidURL},
		{name: "no addresses", url: "https://empty.example/hook", want: ErrInvalidURL},
		{name: "does not resolve even if private allowed", url: "https://nxdomain.example/", allowPrivate: true, want: ErrInvalidURL},

		// Private literals and names.
		{name: "loopback v4", url: "http://127.0.0.1/x", want: ErrPrivateAddress},
		{name: "loopback v6", url: "http://[::1]/", want: ErrPrivateAddress},
		{name: "private 10/8", url: "http://10.1.2.3/", want: ErrPrivateAddress},
		{name: "metadata", url: "http://169.254.169.254/latest/meta-data/", want: ErrPrivateAddress},
		{name: "mapped loopback", url: "http://[::ffff:127.0.0.1]/", want: ErrPrivateAddress},
		{name: "unspecified", url: "http://0.0.0.0:8080/", want: ErrPrivateAddress},
		{name: "zoned link-local", url: "http://[fe80::1%25eth0]/", want: ErrPrivateAddress},
		{name: "private with port", url: "https://192.168.0.10:8443/hook", want: ErrPrivateAddress},
		{name: "localhost", url: "http://localhost:8080/hook", want: ErrPrivateAddress},
		{name: "one private among public", url: "https://mixed.example/hook", want: ErrPrivateAddress},
		{name: "name to mapped private", url: "https://mapped.example/", want: ErrPrivateAddress},
		{name: "name to metadata", url: "https://metadata.example/", want: ErrPrivateAddress},
		{name: "name to zoned link-local", url: "https://linklocal6.example/", want: ErrPrivateAddress},
		{name: "name to NAT64", url: "https://nat64.example/", want: ErrPrivateAddress},
		{name: "name to zoned global", url: "https://zoned-global.example/", want: ErrPrivateAddress},

		// Public.
		{name: "public literal", url: "http://93.184.216.34/hook", want: nil},
		{name: "public v6 literal", url: "https://[2606:4700:4700::1111]:8443/hook", want: nil},
		{name: "public name", url: "https://public.example/hook?x=1#frag", want: nil},
		{name: "public v4-only name", url: "http://public4.example:8080", want: nil},
		{name: "upper-case scheme", url: "HTTPS://public.example/", want: nil},
		{name: "punycode name", url: "https://xn--bcher-kva.example/", want: nil},
		{name: "public mapped name", url: "https://public-mapped.test/", want: nil},
		{name: "exactly 2048", url: long, want: nil},
		{name: "exactly 2048 characters", url: longRunes, want: nil},
		{name: "numeric label not last", url: "https://123.public.example/", want: nil},
		{name: "trailing dot", url: "https://public.example./", want: nil},

		// AllowPrivate.
		{name: "allow loopback v4", url: "http://127.0.0.1/x", allowPrivate: true, want: nil},
		{name: "allow loopback v6", url: "http://[::1]/", allowPrivate: true, want: nil},
		{name: "allow private 10/8", url: "http://10.1.2.3/", allowPrivate: true, want: nil},
		{name: "allow metadata", url: "http://169.254.169.254/", allowPrivate: true, want: nil},
		{name: "allow mapped loopback", url: "http://[::ffff:127.0.0.1]/", allowPrivate: true, want: nil},
		{name: "allow localhost", url: "http://localhost:8080/hook", allowPrivate: true, want: nil},
		{name: "allow mixed", url: "https://mixed.example/hook", allowPrivate: true, want: nil},
		{name: "allow still checks shape", url: "ftp://127.0.0.1/", allowPrivate: true, want: ErrInvalidURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := URLPolicy{AllowPrivate: tt.allowPrivate, Resolver: newFakeResolver()}
			got := p.CheckURL(t.Context(), tt.url)
			if tt.want == nil {
				if got != nil {
					t.Errorf("CheckURL(%q) = %v, want nil", tt.url, got)
				}
				return
			}
			if !errors.Is(got, tt.want) {
				t.Errorf("CheckURL(%q) = %v, want %v", tt.url, got, tt.want)
			}
			other := ErrInvalidURL
			if errors.Is(tt.want, ErrInvalidURL) {
				other = ErrPrivateAddress
			}
			if errors.Is(got, other) {
				t.Errorf("CheckURL(%q) = %v, also matches %v", tt.url, got, other)
			}
		})
	}
}

func TestCheckURLErrorDetail(t *testing.T) {
	t.Parallel()
	p := URLPolicy{Resolver: newFakeResolver()}

	err := p.CheckURL(t.Context(), "https://mixed.example/hook")
	if err == nil || !strings.Contains(err.Error(), "10.0.0.7") {
		t.Errorf("CheckURL(mixed) = %v, want the error to name 10.0.0.7", err)
	}

	err = p.CheckURL(t.Context(), "https://nxdomain.example/")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("CheckURL(nxdomain) = %v, want it to wrap a not-found *net.DNSError", err)
	}

	err = p.CheckURL(t.Context(), "https://user:hunter2@public.example/")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("CheckURL(user info) = %v, want an error that does not echo the password", err)
	}
}

func TestCheckURLLiteralSkipsResolver(t *testing.T) {
	t.Parallel()
	r := newFakeResolver()
	p := URLPolicy{Resolver: r}
	for _, u := range []string{"http://93.184.216.34/", "http://[::1]/", "http://2130706433/"} {
		_ = p.CheckURL(t.Context(), u)
	}
	if n := r.lookups.Load(); n != 0 {
		t.Errorf("resolver called %d times for IP literals, want 0", n)
	}
}

func TestCheckURLCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p := URLPolicy{Resolver: newFakeResolver()}
	err := p.CheckURL(ctx, "https://public.example/")
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalidURL) {
		t.Errorf("CheckURL(canceled) = %v, want context.Canceled and not ErrInvalidURL", err)
	}
}
