package validate

import (
	"encoding/hex"
	"strings"
	"unicode/utf8"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Device routes (channel_type).
const (
	RoutePrivate = "private"
	RouteWebhook = "webhook"
	RouteAPNs    = "apns"
	RouteFCM     = "fcm"
)

// Limits of the device rules (reference/pushgo-gateway.md §4.3).
const (
	minAPNsTokenBytes = 32
	maxAPNsTokenBytes = 128
	minFCMTokenLen    = 16
	maxFCMTokenLen    = 4096
	maxPullLimit      = 500
	defaultPullLimit  = 100
)

// platforms maps every accepted spelling to the stored platform.
var platforms = map[string]string{
	"ios": "ios", "ipados": "ipados", "macos": "macos", "watchos": "watchos", "android": "android",
	"windows": "windows", "win": "windows", "web": "web", "server": "server",
}

// applePlatforms may use route apns.
var applePlatforms = map[string]bool{"ios": true, "ipados": true, "macos": true, "watchos": true}

// Platform normalises a platform name (case-insensitive; "win" is windows).
//
// Errors: invalid_platform.
func Platform(s string) (string, *apierr.Error) {
	if p, ok := platforms[strings.ToLower(strings.TrimSpace(s))]; ok {
		return p, nil
	}
	return "", apierr.New("invalid_platform", "platform must be one of ios, ipados, macos, watchos, android, windows, web, server")
}

// DeviceKey checks a device key: 32 hex characters (returned in lower case).
//
// Errors: device_key_required (blank), invalid_device_key.
func DeviceKey(s string) (string, *apierr.Error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", apierr.New("device_key_required", "device_key is required")
	}
	if !isHex32(s) {
		return "", apierr.New("invalid_device_key", "device_key must be the 32 hex characters /device/register returned")
	}
	return strings.ToLower(s), nil
}

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// DeviceRoute is a validated /channel/device request. The webhook URL's reachability rules are
// checked by the caller, which can resolve names.
type DeviceRoute struct {
	DeviceKey   string
	ChannelType string
	// Token is the provider token or webhook URL ("" for private).
	Token string
	// Platform is "" when the client did not name one.
	Platform string
}

// SetRoute validates /channel/device given the platform the device registered with:
// device_key, channel_type, platform, then the token against the route and platform.
//
// Errors: device_key_required, invalid_device_key, invalid_channel_type, invalid_platform,
// platform_mismatch, provider_token_forbidden_for_private_channel, provider_token_required,
// apns_channel_requires_apple_platform, fcm_channel_requires_android_platform,
// invalid_provider_token.
func SetRoute(req *apiv1.SetRouteRequest, registered func(deviceKey string) (string, *apierr.Error)) (DeviceRoute, *apierr.Error) {
	key, err := DeviceKey(req.GetDeviceKey())
	if err != nil {
		return DeviceRoute{}, err
	}
	r := DeviceRoute{DeviceKey: key, ChannelType: strings.ToLower(strings.TrimSpace(req.GetChannelType()))}
	switch r.ChannelType {
	case RoutePrivate, RouteWebhook, RouteAPNs, RouteFCM:
	default:
		return DeviceRoute{}, apierr.New("invalid_channel_type", "channel_type must be one of private, webhook, apns, fcm")
	}
	platform, err := registered(key)
	if err != nil {
		return DeviceRoute{}, err
	}
	if req.Platform != nil {
		given, err := Platform(req.GetPlatform())
		if err != nil {
			return DeviceRoute{}, err
		}
		if given != platform {
			return DeviceRoute{}, apierr.Newf("platform_mismatch", "the device registered as %s, not %s", platform, given)
		}
		r.Platform = given
	}
	r.Token = strings.TrimSpace(req.GetProviderToken())
	if r.ChannelType == RoutePrivate {
		if r.Token != "" {
			return DeviceRoute{}, apierr.New("provider_token_forbidden_for_private_channel", "provider_token must not be set for channel_type private")
		}
		return r, nil
	}
	if r.Token == "" {
		return DeviceRoute{}, apierr.Newf("provider_token_required", "provider_token is required for channel_type %s", r.ChannelType)
	}
	switch r.ChannelType {
	case RouteAPNs:
		if !applePlatforms[platform] {
			return DeviceRoute{}, apierr.New("apns_channel_requires_apple_platform", "channel_type apns needs an ios, ipados, macos or watchos device")
		}
		b, err := hex.DecodeString(r.Token)
		if err != nil || len(b) < minAPNsTokenBytes || len(b) > maxAPNsTokenBytes {
			return DeviceRoute{}, apierr.New("invalid_provider_token", "an APNs token is 64 to 256 hex characters")
		}
	case RouteFCM:
		if platform != "android" {
			return DeviceRoute{}, apierr.New("fcm_channel_requires_android_platform", "channel_type fcm needs an android device")
		}
		if n := utf8.RuneCountInString(r.Token); n < minFCMTokenLen || n > maxFCMTokenLen {
			return DeviceRoute{}, apierr.New("invalid_provider_token", "an FCM token is 16 to 4096 characters")
		}
	}
	return r, nil
}

// SubscribeQuery is a validated /channel/subscribe request: ChannelID or ChannelName is set.
type SubscribeQuery struct {
	DeviceKey, ChannelID, ChannelName, Password string
}

// Subscribe validates /channel/subscribe: device_key, exactly one of channel_id and
// channel_name (blank counts as absent), that field, then password.
//
// Errors: device_key_required, invalid_device_key, channel_binding_invalid,
// channel_id_required, invalid_channel_id, channel_name_required, invalid_channel_name,
// password_required, invalid_password.
func Subscribe(req *apiv1.SubscribeRequest) (SubscribeQuery, *apierr.Error) {
	key, err := DeviceKey(req.GetDeviceKey())
	if err != nil {
		return SubscribeQuery{}, err
	}
	q := SubscribeQuery{DeviceKey: key, Password: req.GetPassword()}
	hasID, hasName := strings.TrimSpace(req.GetChannelId()) != "", strings.TrimSpace(req.GetChannelName()) != ""
	switch {
	case hasID == hasName:
		return SubscribeQuery{}, apierr.New("channel_binding_invalid", "give either channel_id (an existing channel) or channel_name (a new one)")
	case hasID:
		if q.ChannelID, err = ChannelID(req.GetChannelId()); err != nil {
			return SubscribeQuery{}, err
		}
	default:
		if q.ChannelName, err = ChannelName(req.GetChannelName()); err != nil {
			return SubscribeQuery{}, err
		}
	}
	if err := Password(q.Password); err != nil {
		return SubscribeQuery{}, err
	}
	return q, nil
}

// Unsubscribe validates /channel/unsubscribe.
//
// Errors: device_key_required, invalid_device_key, channel_id_required, invalid_channel_id.
func Unsubscribe(req *apiv1.UnsubscribeRequest) (deviceKey, channelID string, err *apierr.Error) {
	if deviceKey, err = DeviceKey(req.GetDeviceKey()); err != nil {
		return "", "", err
	}
	if channelID, err = ChannelID(req.GetChannelId()); err != nil {
		return "", "", err
	}
	return deviceKey, channelID, nil
}

// Pull validates /messages/pull: limit defaults to 100.
//
// Errors: device_key_required, invalid_device_key, invalid_limit.
func Pull(req *apiv1.PullRequest) (deviceKey string, limit int, err *apierr.Error) {
	return deviceAndLimit(req.GetDeviceKey(), req.Limit, defaultPullLimit, maxPullLimit)
}

// deviceAndLimit validates a device key and an optional limit of 1 to most (def when absent).
func deviceAndLimit(key string, given *int32, def, most int) (deviceKey string, limit int, err *apierr.Error) {
	if deviceKey, err = DeviceKey(key); err != nil {
		return "", 0, err
	}
	if given == nil {
		return deviceKey, def, nil
	}
	if *given < 1 || int(*given) > most {
		return "", 0, apierr.Newf("invalid_limit", "limit must be 1 to %d", most)
	}
	return deviceKey, int(*given), nil
}

// Limits of /channel/device/attempts.
const (
	maxAttemptsLimit     = 100
	defaultAttemptsLimit = 20
)

// Attempts validates /channel/device/attempts.
//
// Errors: device_key_required, invalid_device_key, invalid_limit.
func Attempts(req *apiv1.AttemptsRequest) (deviceKey string, limit int, err *apierr.Error) {
	return deviceAndLimit(req.GetDeviceKey(), req.Limit, defaultAttemptsLimit, maxAttemptsLimit)
}

// Ack validates /messages/ack.
//
// Errors: device_key_required, invalid_device_key, delivery_id_required, invalid_delivery_id.
func Ack(req *apiv1.AckRequest) (deviceKey, deliveryID string, err *apierr.Error) {
	if deviceKey, err = DeviceKey(req.GetDeviceKey()); err != nil {
		return "", "", err
	}
	deliveryID = strings.TrimSpace(req.GetDeliveryId())
	if deliveryID == "" {
		return "", "", apierr.New("delivery_id_required", "delivery_id is required")
	}
	if !isHex32(deliveryID) {
		return "", "", apierr.New("invalid_delivery_id", "delivery_id must be the 32 hex characters of an inbox item")
	}
	return deviceKey, strings.ToLower(deliveryID), nil
}
