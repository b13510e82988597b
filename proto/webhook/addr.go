package webhook

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// nonPublic4 lists the IPv4 ranges that are not public unicast (IANA special-purpose registry,
// RFC 6890 and successors). IsPublic checks IPv4-mapped IPv6 addresses against it too.
var nonPublic4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network", including unspecified
	netip.MustParsePrefix("10.0.0.0/8"),      // private
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT shared address space
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, including 169.254.169.254 (cloud metadata)
	netip.MustParsePrefix("172.16.0.0/12"),   // private
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("192.88.99.0/24"),  // deprecated 6to4 relay anycast
	netip.MustParsePrefix("192.168.0.0/16"),  // private
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, including broadcast 255.255.255.255
}

// global6 is IPv6 global unicast. Everything outside it is not public: unspecified, loopback,
// IPv4-compatible and IPv4-translated forms (::/8), NAT64 (64:ff9b::/96, 64:ff9b:1::/48),
// discard-only (100::/64), unique local (fc00::/7), link-local (fe80::/10) and multicast.
var global6 = netip.MustParsePrefix("2000::/3")

// nonPublic6 lists the ranges inside global6 that are still not public.
var nonPublic6 = []netip.Prefix{
	netip.MustParsePrefix("2001::/23"),     // IETF protocol assignments, including Teredo 2001::/32 and benchmarking 2001:2::/48
	netip.MustParsePrefix("2001:db8::/32"), // documentation
	netip.MustParsePrefix("2002::/16"),     // 6to4, embeds an arbitrary IPv4 address
	netip.MustParsePrefix("3fff::/20"),     // documentation
	netip.MustParsePrefix("5f00::/16"),     // SRv6 segment identifiers
}

// IsPublic reports whether ip is a public unicast address, one a webhook may be sent to
// without AllowPrivate. It is false for the zero Addr, any address with a zone, loopback
// (127/8, ::1), unspecified, private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
// (169.254/16 including the cloud metadata address 169.254.169.254, fe80::/10), multicast,
// CGNAT 100.64/10, 0/8, 192.0.0/24, the documentation ranges, 198.18/15 (benchmarking), 240/4
// and broadcast; for IPv4-mapped IPv6 forms of all of those; and for IPv6 outside 2000::/3 or
// in the special-purpose prefixes that embed or translate to other addresses (NAT64
// 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32 and the rest of 2001::/23). When in doubt, an
// address is not public. Safe for concurrent use.
func IsPublic(ip netip.Addr) bool {
	if !ip.IsValid() || ip.Zone() != "" {
		return false
	}
	ip = ip.Unmap()
	if ip.Is4() {
		for _, p := range nonPublic4 {
			if p.Contains(ip) {
				return false
			}
		}
		return true
	}
	if !global6.Contains(ip) {
		return false
	}
	for _, p := range nonPublic6 {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// DialControl returns a net.Dialer Control function that refuses to connect to non-public
// addresses (see IsPublic) unless allowPrivate. It checks the address actually dialled,
// after DNS, so a name that resolved to a public address at registration and resolves to a
// private one at delivery (DNS rebinding) is still refused. An address it cannot parse as
// ip:port is refused too. The error wraps ErrPrivateAddress; net.Dialer returns it inside a
// *net.OpError, which errors.Is sees through.
//
// Use it as net.Dialer{Control: DialControl(allow)} in the http.Transport that delivers
// webhooks, and leave that Transport's Proxy nil: through a proxy, the address dialled is
// the proxy's and the check protects nothing. The returned function ignores its RawConn and
// is safe for concurrent use.
func DialControl(allowPrivate bool) func(network, address string, c syscall.RawConn) error {
	if allowPrivate {
		return func(string, string, syscall.RawConn) error { return nil }
	}
	return func(network, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("%w: refusing to dial %s %q: %w", ErrPrivateAddress, network, address, err)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("%w: refusing to dial %s %q: not an IP address", ErrPrivateAddress, network, address)
		}
		if !IsPublic(ip) {
			return fmt.Errorf("%w: refusing to dial %s %s", ErrPrivateAddress, network, address)
		}
		return nil
	}
}
