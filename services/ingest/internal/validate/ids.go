package validate

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Limits of the id and password rules (DESIGN.md §6.3).
const (
	channelIDLen   = 26
	minPasswordLen = 8
	maxPasswordLen = 128
	maxOpIDLen     = 128
	maxEntityIDLen = 64 // thing_id and event_id
)

// crockfordAlphabet is the canonical Crockford base32 alphabet (no I, L, O, U).
const crockfordAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// crockfordValue maps a byte to its Crockford value, or -1. Lower case and the aliases
// O→0, I→1, L→1 are accepted.
var crockfordValue = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(crockfordAlphabet); i++ {
		c := crockfordAlphabet[i]
		t[c] = int8(i)
		if c >= 'A' && c <= 'Z' {
			t[c+'a'-'A'] = int8(i)
		}
	}
	t['O'], t['o'] = 0, 0
	t['I'], t['i'], t['L'], t['l'] = 1, 1, 1, 1
	return t
}()

// ChannelID checks a channel id and returns its canonical form: 26 upper-case Crockford base32
// symbols. Dashes and ASCII whitespace anywhere are ignored, case does not matter and O, I, L
// are read as 0, 1, 1. The id encodes 128 bits, so the last symbol's low two bits must be zero.
//
// Errors: channel_id_required (blank), invalid_channel_id.
func ChannelID(s string) (string, *apierr.Error) {
	if strings.TrimSpace(s) == "" {
		return "", apierr.New("channel_id_required", "channel_id is required")
	}
	var out [channelIDLen]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '-', ' ', '\t', '\n', '\r', '\v', '\f':
			continue
		}
		v := crockfordValue[c]
		if v < 0 || n == channelIDLen {
			return "", errInvalidChannelID()
		}
		out[n] = crockfordAlphabet[v]
		n++
	}
	if n != channelIDLen || crockfordValue[out[channelIDLen-1]]&3 != 0 {
		return "", errInvalidChannelID()
	}
	return string(out[:]), nil
}

func errInvalidChannelID() *apierr.Error {
	return apierr.New("invalid_channel_id",
		"channel_id must be a 26-symbol Crockford base32 id of 128 bits (dashes ignored)")
}

// Password checks a channel password: not blank, 8 to 128 characters (code points). The
// password is used exactly as given: it is neither trimmed nor normalised.
//
// Errors: password_required, invalid_password.
func Password(s string) *apierr.Error {
	if strings.TrimSpace(s) == "" {
		return apierr.New("password_required", "password is required")
	}
	if n := utf8.RuneCountInString(s); n < minPasswordLen || n > maxPasswordLen {
		return apierr.Newf("invalid_password", "password must be %d to %d characters", minPasswordLen, maxPasswordLen)
	}
	return nil
}

// isToken reports whether s matches ^[A-Za-z0-9_:-]{1,max}$.
func isToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// tokenRule describes the allowed form of an id in error messages.
func tokenRule(field string, max int) string {
	return fmt.Sprintf("%s must be 1 to %d characters of A-Z, a-z, 0-9, '_', ':' or '-'", field, max)
}

// checkEventID checks a required event_id (update, close, get).
func checkEventID(s string) *apierr.Error {
	if strings.TrimSpace(s) == "" {
		return apierr.New("event_id_required", "event_id is required")
	}
	if !isToken(s, maxEntityIDLen) {
		return apierr.New("invalid_event_id", tokenRule("event_id", maxEntityIDLen))
	}
	return nil
}
