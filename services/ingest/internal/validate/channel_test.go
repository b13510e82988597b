package validate_test

import (
	"testing"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

func TestChannelID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		want     string
		wantCode string
	}{
		{name: "canonical", in: validChannel, want: validChannel},
		{name: "lower case with dashes", in: "06j0-fzg1-y8xg-g14v-tq4y-3g10-mr", want: validChannel},
		{name: "whitespace inside and around", in: "\t06J0 FZG1 Y8XG G14V TQ4Y 3G10 MR\n", want: validChannel},
		{name: "aliases O I L", in: "O6J0FZGIY8XGGl4VTQ4Y3G1OMR", want: validChannel},
		{name: "all zero", in: "00000000000000000000000000", want: "00000000000000000000000000"},
		{name: "last symbol 4", in: "0000000000000000000000000" + "4", want: "0000000000000000000000000" + "4"},
		{name: "last symbol 8", in: "0000000000000000000000000" + "8", want: "0000000000000000000000000" + "8"},
		{name: "last symbol c", in: "0000000000000000000000000" + "c", want: "0000000000000000000000000" + "C"},
		{name: "last symbol G", in: "0000000000000000000000000" + "G", want: "0000000000000000000000000" + "G"},
		{name: "last symbol M", in: "0000000000000000000000000" + "M", want: "0000000000000000000000000" + "M"},
		{name: "last symbol W", in: "0000000000000000000000000" + "W", want: "0000000000000000000000000" + "W"},
		{name: "max symbols", in: "ZZZZZZZZZZZZZZZZZZZZZZZZZW", want: "ZZZZZZZZZZZZZZZZZZZZZZZZZW"},
		{name: "empty", in: "", wantCode: "channel_id_required"},
		{name: "blank", in: " \u00a0 ", wantCode: "channel_id_required"},
		{name: "only dashes", in: "--", wantCode: "invalid_channel_id"},
		{name: "last symbol 1", in: "0000000000000000000000000" + "1", wantCode: "invalid_channel_id"},
		{name: "last symbol Z", in: "0000000000000000000000000" + "Z", wantCode: "invalid_channel_id"},
		{name: "last symbol alias L", in: "0000000000000000000000000" + "L", wantCode: "invalid_channel_id"},
		{name: "letter U", in: "U000000000000000000000000" + "0", wantCode: "invalid_channel_id"},
		{name: "punctuation", in: "0000000000000000000000000_0", wantCode: "invalid_channel_id"},
		{name: "non-breaking space inside", in: "0000000000000\u00a00000000000000", wantCode: "invalid_channel_id"},
		{name: "25 symbols", in: "0000000000000000000000000", wantCode: "invalid_channel_id"},
		{name: "27 symbols", in: "000000000000000000000000000", wantCode: "invalid_channel_id"},
		{name: "ULID-like 26 with bad tail", in: "01ARZ3NDEKTSV4RRFFQ69G5FAV", wantCode: "invalid_channel_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := validate.ChannelID(tt.in)
			if tt.wantCode != "" {
				if err == nil || err.Code != tt.wantCode {
					t.Fatalf("ChannelID(%q) = %q, %v; want %s", tt.in, got, err, tt.wantCode)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ChannelID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		wantCode string
	}{
		{name: "8 ASCII", in: "12345678"},
		{name: "128 ASCII", in: n("x", 128)},
		{name: "8 multibyte", in: n("密", 8)},
		{name: "spaces count", in: " 123456 "},
		{name: "empty", in: "", wantCode: "password_required"},
		{name: "whitespace", in: "\t\n        ", wantCode: "password_required"},
		{name: "7 ASCII", in: "1234567", wantCode: "invalid_password"},
		{name: "129 ASCII", in: n("x", 129), wantCode: "invalid_password"},
		{name: "129 multibyte", in: n("密", 129), wantCode: "invalid_password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := validate.Password(tt.in)
			switch {
			case tt.wantCode == "" && got != nil:
				t.Errorf("Password(%q) = %v, want nil", tt.in, got)
			case tt.wantCode != "" && (got == nil || got.Code != tt.wantCode):
				t.Errorf("Password(%q) = %v, want %s", tt.in, got, tt.wantCode)
			}
		})
	}
}

type createChannelErrorCase struct {
	name     string
	req      *apiv1.CreateChannelRequest
	wantCode string
}

var createChannelErrorCases = []createChannelErrorCase{
	{"nil request", nil, "channel_name_required"},
	{"name empty", &apiv1.CreateChannelRequest{Password: validPassword}, "channel_name_required"},
	{"name blank", &apiv1.CreateChannelRequest{ChannelName: " \t ", Password: validPassword}, "channel_name_required"},
	{"name 129 characters", &apiv1.CreateChannelRequest{ChannelName: n("名", 129), Password: validPassword}, "invalid_channel_name"},
	{"name with newline", &apiv1.CreateChannelRequest{ChannelName: "a\nb", Password: validPassword}, "invalid_channel_name"},
	{"name with DEL", &apiv1.CreateChannelRequest{ChannelName: "a\x7fb", Password: validPassword}, "invalid_channel_name"},
	{"name with C1 control", &apiv1.CreateChannelRequest{ChannelName: "a\u0085b", Password: validPassword}, "invalid_channel_name"},
	{"name invalid UTF-8", &apiv1.CreateChannelRequest{ChannelName: "a\xffb", Password: validPassword}, "invalid_channel_name"},
	{"password missing", &apiv1.CreateChannelRequest{ChannelName: "ops"}, "password_required"},
	{"password short", &apiv1.CreateChannelRequest{ChannelName: "ops", Password: "short"}, "invalid_password"},
	{"order: name before password", &apiv1.CreateChannelRequest{ChannelName: "", Password: "x"}, "channel_name_required"},
}

func TestCreateChannelErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range createChannelErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name, pw, got := validate.CreateChannel(tt.req)
			if got == nil || got.Code != tt.wantCode {
				t.Fatalf("CreateChannel = %q, %q, %v; want %s", name, pw, got, tt.wantCode)
			}
		})
	}
}

func TestCreateChannel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		req      *apiv1.CreateChannelRequest
		wantName string
		wantPass string
	}{
		{"trimmed name", &apiv1.CreateChannelRequest{ChannelName: "  Ops alerts ", Password: " pass word "}, "Ops alerts", " pass word "},
		{"128 characters after trim", &apiv1.CreateChannelRequest{ChannelName: " " + n("名", 128) + " ", Password: validPassword}, n("名", 128), validPassword},
		{"tabs at the ends are trimmed", &apiv1.CreateChannelRequest{ChannelName: "\tops\t", Password: validPassword}, "ops", validPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name, pw, err := validate.CreateChannel(tt.req)
			if err != nil {
				t.Fatalf("CreateChannel = %v", err)
			}
			eq(t, "name", name, tt.wantName)
			eq(t, "password", pw, tt.wantPass)
		})
	}
}
