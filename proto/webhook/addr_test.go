package webhook

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestIsPublic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ip   string
		want bool
	}{
		// Public.
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"93.184.216.34", true},
		{"100.63.255.255", true},  // just below CGNAT
		{"100.128.0.0", true},     // just above CGNAT
		{"172.15.255.255", true},  // just below 172.16/12
		{"172.32.0.0", true},      // just above 172.16/12
		{"192.0.1.1", true},       // just above 192.0.0/24
		{"198.17.255.255", true},  // just below 198.18/15
		{"198.20.0.0", true},      // just above 198.18/15
		{"223.255.255.255", true}, // just below multicast
		{"::ffff:8.8.8.8", true},  // IPv4-mapped public
		{"2606:4700:4700::1111", true},
		{"2001:4860:4860::8888", true},
		{"2a00:1450:4001:80b::200e", true},
		{"2001:200::1", true}, // first real allocation after 2001::/23

		// Loopback and unspecified.
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"::1", false},
		{"0.0.0.0", false},
		{"::", false},
		// 0/8.
		{"0.1.2.3", false},
		// Private.
		{"10.0.0.1", false},
		{"10.255.255.255", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.0.1", false},
		{"192.168.255.255", false},
		{"fc00::1", false},
		{"fd12:3456:789a::1", false},
		// Link-local and cloud metadata.
		{"169.254.0.1", false},
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"febf::1", false},
		// Multicast.
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"ff02::1", false},
		{"ff0e::1", false},
		// CGNAT.
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		// IETF protocol assignments, documentation, benchmarking.
		{"192.0.0.8", false},
		{"192.0.2.1", false},
		{"198.51.100.1", false},
		{"203.0.113.1", false},
		{"198.18.0.1", false},
		{"198.19.255.255", false},
		// Reserved and broadcast.
		{"240.0.0.1", false},
		{"255.255.255.255", false},
		// IPv4-mapped forms of non-public addresses.
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:100.64.0.1", false},
		{"::ffff:0.0.0.0", false},
		{"::ffff:255.255.255.255", false},
		// Other IPv6 forms that embed IPv4 or are special-purpose.
		{"::127.0.0.1", false},         // IPv4-compatible (deprecated)
		{"::8.8.8.8", false},           // IPv4-compatible, even of a public address
		{"::ffff:0:7f00:1", false},     // IPv4-translated
		{"64:ff9b::7f00:1", false},     // NAT64 of 127.0.0.1
		{"64:ff9b::808:808", false},    // NAT64, even of a public address
		{"64:ff9b:1::1", false},        // local-use NAT64
		{"2002:7f00:1::1", false},      // 6to4 of 127.0.0.1
		{"2002:808:808::1", false},     // 6to4, even of a public address
		{"2001::1", false},             // Teredo
		{"2001:0:4136:e378::1", false}, // Teredo
		{"2001:2::1", false},           // benchmarking
		{"2001:db8::1", false},         // documentation
		{"3fff::1", false},             // documentation
		{"100::1", false},              // discard-only
		{"5f00::1", false},             // SRv6 SID
		{"4000::1", false},             // outside 2000::/3
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			t.Parallel()
			ip := netip.MustParseAddr(tt.ip)
			if got := IsPublic(ip); got != tt.want {
				t.Errorf("IsPublic(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
	if IsPublic(netip.Addr{}) {
		t.Error("IsPublic(zero Addr) = true, want false")
	}
}

func TestDialControl(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		network      string
		address      string
		allowPrivate bool
		wantRefused  bool
	}{
		{"loopback refused", "tcp4", "127.0.0.1:80", false, true},
		{"public accepted", "tcp4", "8.8.8.8:443", false, false},
		{"loopback allowed", "tcp4", "127.0.0.1:80", true, false},
		{"v6 loopback refused", "tcp6", "[::1]:443", false, true},
		{"mapped loopback refused", "tcp6", "[::ffff:127.0.0.1]:80", false, true},
		{"metadata refused", "tcp4", "169.254.169.254:80", false, true},
		{"private refused", "tcp4", "10.0.0.7:8080", false, true},
		{"zoned link-local refused", "tcp6", "[fe80::1%eth0]:80", false, true},
		{"public v6 accepted", "tcp6", "[2606:4700:4700::1111]:443", false, false},
		{"unparseable refused", "tcp", "public.example:443", false, true},
		{"no port refused", "tcp4", "8.8.8.8", false, true},
		{"anything allowed when private allowed", "unix", "/tmp/sock", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := DialControl(tt.allowPrivate)(tt.network, tt.address, nil)
			if tt.wantRefused {
				if !errors.Is(err, ErrPrivateAddress) {
					t.Errorf("control(%s, %s) = %v, want ErrPrivateAddress", tt.network, tt.address, err)
				}
				return
			}
			if err != nil {
				t.Errorf("control(%s, %s) = %v, want nil", tt.network, tt.address, err)
			}
		})
	}
}

// TestDialControlInDialer checks that a real net.Dialer runs the control before connecting and
// that its *net.OpError still wraps ErrPrivateAddress. The dial is refused before connect(2),
// so no packet is sent.
func TestDialControlInDialer(t *testing.T) {
	t.Parallel()
	d := net.Dialer{Control: DialControl(false)}
	conn, err := d.DialContext(t.Context(), "tcp4", "127.0.0.1:9")
	if err == nil {
		conn.Close()
		t.Fatal("DialContext(127.0.0.1:9) succeeded, want refusal")
	}
	var opErr *net.OpError
	if !errors.Is(err, ErrPrivateAddress) || !errors.As(err, &opErr) {
		t.Errorf("DialContext(127.0.0.1:9) = %v, want a *net.OpError wrapping ErrPrivateAddress", err)
	}
}
