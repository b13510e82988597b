package validate

import (
	"strings"
	"unicode"
	"unicode/utf8"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// maxChannelNameLen caps channel names (DESIGN.md §6.5, channel.proto).
const maxChannelNameLen = 128

// CreateChannel validates a /channel/create request: channel_name, then password. It returns the
// trimmed name and the password as given.
//
// Errors: channel_name_required (blank), invalid_channel_name (over 128 characters after
// trimming, or any control character), password_required, invalid_password.
func CreateChannel(req *apiv1.CreateChannelRequest) (name, password string, err *apierr.Error) {
	if name, err = ChannelName(req.GetChannelName()); err != nil {
		return "", "", err
	}
	if err := Password(req.GetPassword()); err != nil {
		return "", "", err
	}
	return name, req.GetPassword(), nil
}

// ChannelName checks a channel name and returns it trimmed.
//
// Errors: channel_name_required (blank), invalid_channel_name.
func ChannelName(s string) (string, *apierr.Error) {
	name := strings.TrimSpace(s)
	if name == "" {
		return "", apierr.New("channel_name_required", "channel_name is required")
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxChannelNameLen ||
		strings.ContainsFunc(name, unicode.IsControl) {
		return "", apierr.Newf("invalid_channel_name",
			"channel_name must be at most %d characters and contain no control characters", maxChannelNameLen)
	}
	return name, nil
}
