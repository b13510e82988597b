package channels

import "crypto/rand"

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newChannelID returns 128 random bits as 26 Crockford base32 symbols (PushGo's format: the
// last symbol carries 3 data bits and 2 zero bits).
func newChannelID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	out := make([]byte, 26)
	var acc uint32
	bits := 0
	n := 0
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			out[n] = crockford[(acc>>(bits-5))&31]
			n++
			bits -= 5
		}
	}
	out[n] = crockford[(acc<<(5-bits))&31] // the last 3 bits, padded with 2 zero bits
	return string(out)
}
