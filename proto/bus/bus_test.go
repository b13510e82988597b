package bus

import "testing"

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id, want string
	}{
		{"abc-DEF-123", "abc-DEF-123"},
		{"a:b", "a_-b"},
		{"a_b", "a__b"},
		{"a_-b", "a__-b"},
		{"op:1_x", "op_-1__x"},
		{"::", "_-_-"},
		{"__", "____"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := Token(tt.id)
		if got != tt.want {
			t.Errorf("Token(%q) = %q, want %q", tt.id, got, tt.want)
		}
		back, ok := UnToken(got)
		if !ok || back != tt.id {
			t.Errorf("UnToken(%q) = %q, %v; want %q", got, back, ok, tt.id)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("Token(%q) == Token(%q)", tt.id, prev)
		}
		seen[got] = tt.id
	}
}

func TestUnTokenRejectsForeign(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"a_", "a_x", "_"} {
		if _, ok := UnToken(tok); ok {
			t.Errorf("UnToken(%q) accepted a token Token never makes", tok)
		}
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "a", "a:b", "a_b", "_-", "x__y::z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		tok := Token(id)
		back, ok := UnToken(tok)
		if !ok || back != id {
			t.Fatalf("round trip of %q via %q gave %q, %v", id, tok, back, ok)
		}
	})
}
