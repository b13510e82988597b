package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxURLLength is CheckURL's limit in characters (Unicode code points, as everywhere in
// DESIGN.md §6), the same as for image URLs.
const maxURLLength = 2048

// URL policy errors. CheckURL and DialControl wrap them with the reason; compare with
// errors.Is.
var (
	// ErrInvalidURL means the webhook URL is malformed or unusable: not an absolute http or
	// https URL, an empty host, user info, an invalid port, a numeric host that is not a
	// valid IP literal, longer than 2048 characters, or a host name that does not resolve.
	ErrInvalidURL = errors.New("webhook: invalid URL")
	// ErrPrivateAddress means the webhook URL's host is, or resolves to, an address that is
	// not public (see IsPublic) while private addresses are not allowed.
	ErrPrivateAddress = errors.New("webhook: non-public address")
)

// URLPolicy decides which webhook URLs are allowed. The zero value refuses non-public
// addresses and resolves names with net.DefaultResolver. A URLPolicy is safe for concurrent
// use if its Resolver is.
type URLPolicy struct {
	// AllowPrivate permits loopback, private, link-local and other non-public addresses
	// (--webhook-allow-private, for development and tests).
	AllowPrivate bool
	// Resolver looks up host names; nil means net.DefaultResolver.
	Resolver interface {
		LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	}
}

// CheckURL validates a webhook URL at registration. The URL must be an absolute http or
// https URL (scheme case-insensitive) of at most 2048 characters, with a non-empty host, no
// user info and, if given, a port in 1-65535. A host whose last label is numeric but that is
// not a valid IP literal (such as "2130706433", "127.1" or "0x7f.1", which some parsers read
// as IPv4) is refused as ambiguous.
//
// A host name is resolved with the policy's Resolver and must resolve to at least one
// address; a lookup failure is ErrInvalidURL, wrapping the resolver's error too (so callers
// may also inspect a *net.DNSError). If ctx ends first, the context's error is returned
// instead. Unless AllowPrivate, the host — a literal IP or every address the name resolves
// to — must be public (see IsPublic); otherwise the error wraps ErrPrivateAddress and names
// the address. Names are resolved even with AllowPrivate, so a typo fails in every mode.
//
// Passing CheckURL does not make later requests safe — DNS can change after registration —
// so delivery must dial through DialControl as well. CheckURL is safe for concurrent use if
// the Resolver is.
func (p URLPolicy) CheckURL(ctx context.Context, raw string) error {
	if n := utf8.RuneCountInString(raw); n > maxURLLength {
		return fmt.Errorf("%w: %d characters, more than %d", ErrInvalidURL, n, maxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidURL, unwrapURLError(err))
	}
	if !u.IsAbs() {
		return fmt.Errorf("%w: not an absolute URL", ErrInvalidURL)
	}
	if u.Scheme != "http" && u.Scheme != "https" { // url.Parse lower-cases the scheme
		return fmt.Errorf("%w: scheme %q is not http or https", ErrInvalidURL, u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%w: empty host", ErrInvalidURL)
	}
	if u.User != nil {
		return fmt.Errorf("%w: user info is not allowed", ErrInvalidURL)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: invalid port %q", ErrInvalidURL, port)
		}
	}

	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if !p.AllowPrivate && !IsPublic(ip) {
			return fmt.Errorf("%w: %s", ErrPrivateAddress, ip)
		}
		return nil
	}
	if numericLastLabel(host) {
		return fmt.Errorf("%w: numeric host %q is not a valid IP address", ErrInvalidURL, host)
	}

	var r resolver = net.DefaultResolver
	if p.Resolver != nil {
		r = p.Resolver
	}
	addrs, err := r.LookupIPAddr(ctx, host)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("webhook: resolve %s: %w", host, ctxErr)
	}
	if err != nil {
		return fmt.Errorf("%w: host %s does not resolve: %w", ErrInvalidURL, host, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%w: host %s has no addresses", ErrInvalidURL, host)
	}
	if p.AllowPrivate {
		return nil
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok {
			ip = ip.WithZone(a.Zone)
		}
		if !ok || !IsPublic(ip) {
			return fmt.Errorf("%w: %s resolves to %s", ErrPrivateAddress, host, a.String())
		}
	}
	return nil
}

// resolver is the type of URLPolicy.Resolver.
type resolver = interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the whole URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// numericLastLabel reports whether host's last dot-separated label (ignoring one trailing
// dot) is all decimal digits or a 0x hex number: the WHATWG URL rule for "this host is an
// IPv4 address". No top-level domain looks like that, so such a host that netip rejected is
// an obfuscated or malformed address, not a name.
func numericLastLabel(host string) bool {
	host = strings.TrimSuffix(host, ".")
	label := host[strings.LastIndexByte(host, '.')+1:]
	if label == "" {
		return false
	}
	digits := label
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		digits = label[2:]
		for i := 0; i < len(digits); i++ {
			if !isHex(digits[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
