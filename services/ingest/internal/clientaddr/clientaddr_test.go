package clientaddr

import (
	"net"
	"strings"
	"testing"
)

func mustPrefixes(t *testing.T, s string) *Resolver {
	t.Helper()
	trusted, exempt, _ := strings.Cut(s, "|")
	tp, err := ParsePrefixes(trusted)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := ParsePrefixes(exempt)
	if err != nil {
		t.Fatal(err)
	}
	return New(tp, ep)
}

func TestFromHTTP(t *testing.T) {
	t.Parallel()
	many := strings.TrimSuffix(strings.Repeat("10.0.0.9, ", 40), ", ")
	tests := []struct {
		name string
		// prefixes is "trusted|exempt".
		prefixes   string
		remote     string
		xff        []string
		wantKey    string
		wantExempt bool
	}{
		{"peer, no proxies", "", "203.0.113.7:5000", nil, "203.0.113.7", false},
		{"untrusted peer's XFF is ignored", "10.0.0.0/8", "203.0.113.7:5000", []string{"198.51.100.1"}, "203.0.113.7", false},
		{"no trusted proxies: XFF ignored", "", "127.0.0.1:5000", []string{"198.51.100.1"}, "127.0.0.1", false},
		{"trusted peer: last hop", "127.0.0.1/32", "127.0.0.1:5000", []string{"198.51.100.1"}, "198.51.100.1", false},
		{"rightmost untrusted wins over a spoofed left", "10.0.0.0/8", "10.0.0.1:80", []string{"1.2.3.4, 198.51.100.1, 10.0.0.2"}, "198.51.100.1", false},
		{"several header lines are one list", "10.0.0.0/8", "10.0.0.1:80", []string{"1.2.3.4", "198.51.100.1", "10.0.0.2"}, "198.51.100.1", false},
		{"all trusted: the farthest", "10.0.0.0/8", "10.0.0.1:80", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3", false},
		{"trusted peer without XFF", "10.0.0.0/8", "10.0.0.1:80", nil, "10.0.0.1", false},
		{"malformed rightmost: the proxy", "10.0.0.0/8", "10.0.0.1:80", []string{"198.51.100.1, garbage"}, "10.0.0.1", false},
		{"malformed behind a trusted hop: that hop", "10.0.0.0/8", "10.0.0.1:80", []string{"garbage, 10.0.0.2"}, "10.0.0.2", false},
		{"malformed left of the client is never read", "10.0.0.0/8", "10.0.0.1:80", []string{"garbage, 198.51.100.1"}, "198.51.100.1", false},
		{"empty entries stop the walk", "10.0.0.0/8", "10.0.0.1:80", []string{"198.51.100.1,,"}, "10.0.0.1", false},
		{"hop with a port", "10.0.0.0/8", "10.0.0.1:80", []string{"198.51.100.1:4711"}, "198.51.100.1", false},
		{"IPv6 hop in brackets with a port", "10.0.0.0/8", "10.0.0.1:80", []string{"[2001:db8:1:2::5]:4711"}, "2001:db8:1:2::/64", false},
		{"IPv6 hop in brackets", "10.0.0.0/8", "10.0.0.1:80", []string{" [2001:db8::5] "}, "2001:db8::/64", false},
		{"IPv6 peer keyed by /64", "", "[2001:db8:aa:bb:1:2:3:4]:443", nil, "2001:db8:aa:bb::/64", false},
		{"IPv4-mapped peer is IPv4", "", "[::ffff:203.0.113.7]:443", nil, "203.0.113.7", false},
		{"IPv4-mapped hop is IPv4 and trusted as such", "10.0.0.0/8", "[::ffff:10.0.0.1]:80", []string{"::ffff:10.0.0.2, ::ffff:198.51.100.1"}, "198.51.100.1", false},
		{"zone dropped", "", "[fe80::1%eth0]:80", nil, "fe80::/64", false},
		{"more hops than the bound: the last reached", "10.0.0.0/8", "10.0.0.1:80", []string{"198.51.100.1, " + many}, "10.0.0.9", false},
		{"unknown peer", "", "@", nil, "unknown", false},
		{"exempt client", "127.0.0.1/32|198.51.100.0/24", "127.0.0.1:1", []string{"198.51.100.1"}, "198.51.100.1", true},
		{"exempt is about the client, not the proxy", "127.0.0.1/32|127.0.0.1", "127.0.0.1:1", []string{"198.51.100.1"}, "198.51.100.1", false},
		{"exempt peer", "|203.0.113.0/24", "203.0.113.7:1", nil, "203.0.113.7", true},
		{"exempt IPv4-mapped list entry", "|::ffff:203.0.113.0/120", "203.0.113.7:1", nil, "203.0.113.7", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustPrefixes(t, tt.prefixes).FromHTTP(tt.remote, tt.xff)
			if got.Key() != tt.wantKey || got.Exempt != tt.wantExempt {
				t.Fatalf("got key %q exempt %v, want %q %v", got.Key(), got.Exempt, tt.wantKey, tt.wantExempt)
			}
		})
	}
}

func TestFromNet(t *testing.T) {
	t.Parallel()
	r := mustPrefixes(t, "127.0.0.0/8")
	tests := []struct {
		name string
		addr net.Addr
		xff  []string
		want string
	}{
		{"tcp peer (16-byte IPv4)", &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 1}, nil, "203.0.113.7"},
		{"trusted tcp peer with metadata", &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, []string{"198.51.100.1"}, "198.51.100.1"},
		{"unix socket", &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, nil, "unknown"},
		{"no peer", nil, nil, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := r.FromNet(tt.addr, tt.xff).Key(); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "", false},
		{" 10.1.2.3/8 , 2001:db8::1/32,192.0.2.1 ", "10.0.0.0/8 2001:db8::/32 192.0.2.1/32", false},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", false},
		{"2001:db8::1", "2001:db8::1/128", false},
		{"10.0.0.0/33", "", true},
		{"example.com", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePrefixes(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if strings.Join(s, " ") != tt.want {
				t.Fatalf("got %q, want %q", s, tt.want)
			}
		})
	}
}

func TestNilResolverAndContext(t *testing.T) {
	t.Parallel()
	var r *Resolver
	if got := r.FromHTTP("127.0.0.1:1", []string{"198.51.100.1"}); got.Key() != "127.0.0.1" || got.Exempt {
		t.Fatalf("nil resolver: %+v", got)
	}
	if _, ok := FromContext(t.Context()); ok {
		t.Fatal("an address in an empty context")
	}
	a := r.FromHTTP("192.0.2.1:1", nil)
	if got, ok := FromContext(NewContext(t.Context(), a)); !ok || got != a {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
}

// TestProxied: Proxied says whether the TCP peer is a trusted proxy, whatever its header says.
func TestProxied(t *testing.T) {
	t.Parallel()
	r := mustPrefixes(t, "10.0.0.0/8")
	tests := []struct {
		remote string
		xff    []string
		want   bool
	}{
		{"10.0.0.1:80", []string{"198.51.100.1"}, true},
		{"10.0.0.1:80", nil, true},
		{"[::ffff:10.0.0.1]:80", nil, true},
		{"203.0.113.7:80", []string{"10.0.0.2"}, false},
		{"203.0.113.7:80", nil, false},
		{"@", nil, false},
	}
	for _, tt := range tests {
		if got := r.FromHTTP(tt.remote, tt.xff).Proxied; got != tt.want {
			t.Errorf("FromHTTP(%q, %q).Proxied = %v, want %v", tt.remote, tt.xff, got, tt.want)
		}
	}
	if New(nil, nil).FromHTTP("10.0.0.1:80", nil).Proxied {
		t.Error("no trusted proxies, yet Proxied")
	}
}
