// Package clientaddr decides which client a request comes from, for the per-address limits of
// DESIGN.md §8.2: the TCP peer, unless the peer is a trusted proxy (--trusted-proxies), in which
// case the last untrusted hop of X-Forwarded-For. Limits are keyed by the address's prefix
// (IPv4 /32, IPv6 /64: one IPv6 subscriber usually holds a whole /64), and addresses in
// --limit-exempt skip them.
//
// The HTTP handler resolves the address once and puts it in the request context (NewContext);
// the REST gateway reaches the gRPC handlers in process with that context, and the gRPC
// interceptor resolves it from the peer only for calls on the real gRPC listener.
package clientaddr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// maxHops bounds how many X-Forwarded-For entries are looked at, so a header of thousands of
// entries costs no more than a short one. A chain of more than this many trusted proxies is
// not a deployment anyone runs.
const maxHops = 32

// Addr is a resolved client address. The zero Addr is an unknown client (no usable peer
// address), which all share one limiter key.
type Addr struct {
	// IP is the client's address, IPv4-mapped IPv6 unmapped and without zone; invalid when
	// unknown.
	IP netip.Addr
	// Exempt is set when IP is in --limit-exempt: the per-address limits do not apply.
	Exempt bool
	// Proxied is set when the TCP peer is a trusted proxy: its connection may carry the
	// requests of many clients.
	Proxied bool
}

// Key is the limiter key of the address: "203.0.113.7" for IPv4 (the /32), "2001:db8:1:2::/64"
// for IPv6 (the /64), "unknown" when there is no address.
func (a Addr) Key() string {
	switch {
	case !a.IP.IsValid():
		return "unknown"
	case a.IP.Is4():
		return a.IP.String()
	default:
		p, _ := a.IP.Prefix(64) // cannot fail for a valid IPv6 address
		return p.String()
	}
}

// String is the address for logs.
func (a Addr) String() string {
	if !a.IP.IsValid() {
		return "unknown"
	}
	return a.IP.String()
}

// Resolver resolves client addresses. The zero Resolver (and nil) trusts no proxy and exempts
// no one. It is immutable and safe for concurrent use.
type Resolver struct {
	trusted []netip.Prefix
	exempt  []netip.Prefix
}

// New returns a resolver trusting X-Forwarded-For from peers in trusted and exempting clients
// in exempt from the per-address limits.
func New(trusted, exempt []netip.Prefix) *Resolver {
	return &Resolver{trusted: trusted, exempt: exempt}
}

// ParsePrefixes parses a comma-separated list of CIDRs ("10.0.0.0/8, 2001:db8::/32"); a bare
// address stands for itself (/32 or /128). The empty string is the empty list. Prefixes are
// masked and IPv4-mapped IPv6 prefixes of at least 96 bits are turned into IPv4 ones, so
// "::ffff:10.0.0.0/104" matches 10.1.2.3.
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for s := range strings.SplitSeq(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				return nil, fmt.Errorf("bad CIDR %q: %w", s, err)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("bad address %q: %w", s, err)
			}
			a = a.WithZone("")
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// FromHTTP resolves the client of an HTTP request from its RemoteAddr ("host:port") and its
// X-Forwarded-For header lines.
func (r *Resolver) FromHTTP(remoteAddr string, forwardedFor []string) Addr {
	return r.resolve(parseHostPort(remoteAddr), forwardedFor)
}

// FromNet resolves the client of a connection whose peer is addr (a gRPC peer), with the
// x-forwarded-for metadata values a proxy in front of the gRPC listener may have set.
func (r *Resolver) FromNet(addr net.Addr, forwardedFor []string) Addr {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case nil:
	default:
		ip = parseHostPort(a.String())
	}
	return r.resolve(normalize(ip), forwardedFor)
}

// resolve walks X-Forwarded-For from the right while the hop it stands on is trusted: each
// entry was appended by that trusted hop and names its peer. The first untrusted address is
// the client. When the header runs out, holds a malformed entry, or is longer than maxHops,
// the client is the last address reached (a trusted proxy, or the peer itself): entries left of
// a malformed one cannot be attributed to anyone, and taking the proxy never lets a client
// choose its own key.
func (r *Resolver) resolve(peer netip.Addr, forwardedFor []string) Addr {
	client := peer
	if r != nil && len(r.trusted) > 0 && r.isTrusted(client) {
		hops := 0
	walk:
		for i := len(forwardedFor) - 1; i >= 0; i-- {
			line := forwardedFor[i]
			for line != "" {
				var entry string
				if j := strings.LastIndexByte(line, ','); j >= 0 {
					line, entry = line[:j], line[j+1:]
				} else {
					line, entry = "", line
				}
				if hops++; hops > maxHops {
					break walk
				}
				ip := parseHop(strings.TrimSpace(entry))
				if !ip.IsValid() {
					break walk
				}
				client = ip
				if !r.isTrusted(client) {
					break walk
				}
			}
		}
	}
	return Addr{IP: client, Exempt: client.IsValid() && r != nil && contains(r.exempt, client),
		Proxied: r != nil && r.isTrusted(peer)}
}

func (r *Resolver) isTrusted(ip netip.Addr) bool {
	return ip.IsValid() && contains(r.trusted, ip)
}

func contains(list []netip.Prefix, ip netip.Addr) bool {
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// parseHostPort parses "host:port", "[v6]:port" or a bare address; invalid when none.
func parseHostPort(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr())
	}
	a, _ := netip.ParseAddr(s)
	return normalize(a)
}

// parseHop parses one X-Forwarded-For entry: an address, optionally with a port
// ("203.0.113.7:4711", "[2001:db8::1]:4711") or in brackets; invalid when malformed
// ("unknown", obfuscated identifiers of RFC 7239, garbage).
func parseHop(s string) netip.Addr {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	return parseHostPort(s)
}

// normalize unmaps IPv4-mapped IPv6 addresses and drops zones, so one client has one form.
func normalize(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return a
	}
	return a.Unmap().WithZone("")
}

type ctxKey struct{}

// NewContext returns ctx carrying a.
func NewContext(ctx context.Context, a Addr) context.Context {
	return context.WithValue(ctx, ctxKey{}, a)
}

// FromContext returns the address NewContext put in ctx; ok is false when there is none.
func FromContext(ctx context.Context) (a Addr, ok bool) {
	a, ok = ctx.Value(ctxKey{}).(Addr)
	return a, ok
}
