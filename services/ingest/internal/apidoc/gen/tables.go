package main

// What the protos do not say: which fields each route requires or forbids, and which
// error_codes it may answer. The validate package is the truth; these tables describe it, and
// the end-to-end suite checks that every error_code a test receives is listed for its route.

// requestVariants gives the routes that share EventRequest a schema each, with their own
// required and forbidden fields (DESIGN.md §6.3).
var requestVariants = map[string]string{
	"/event/create": "EventCreateRequest",
	"/event/update": "EventUpdateRequest",
	"/event/close":  "EventCloseRequest",
}

// required are the fields a route's request must have.
var required = map[string][]string{
	"/event/create":            {"channel_id", "password", "title", "status", "message", "severity", "event_time"},
	"/event/update":            {"channel_id", "password", "event_id", "status", "message", "severity", "event_time"},
	"/event/close":             {"channel_id", "password", "event_id", "status", "message", "severity", "event_time"},
	"/event/get":               {"channel_id", "password", "event_id"},
	"/event/history":           {"channel_id", "password", "event_id"},
	"/event/list":              {"channel_id", "password"},
	"/channel/create":          {"channel_name", "password"},
	"/channel/subscribe":       {"device_key", "password"},
	"/channel/unsubscribe":     {"device_key", "channel_id"},
	"/channel/device":          {"device_key", "channel_type"},
	"/channel/device/attempts": {"device_key"},
	"/device/register":         {"platform"},
	"/messages/pull":           {"device_key"},
	"/messages/ack":            {"device_key", "delivery_id"},
	"/activity/register":       {"device_key"},
	"/activity/unregister":     {"device_key"},
	"/admin/tenant/create":     {"name"},
	"/admin/tenant/update":     {"tenant_id"},
	"/admin/tenant/delete":     {"tenant_id"},
	"/admin/tenant/usage":      {"tenant_id"},
}

// forbidden are the fields of a shared request a route refuses (each with its own code).
var forbidden = map[string][]string{
	"/event/create": {"event_id", "ended_at"},
	"/event/update": {"started_at", "ended_at"},
	"/event/close":  {"started_at"},
}

// commonErrors may answer any route with a JSON body.
var commonErrors = []string{
	"authentication_failed", "payload_too_large", "request_timeout", "missing_json_content_type", "invalid_json_syntax",
	"invalid_json_data", "unknown_field", "duplicate_field", "method_not_allowed", "internal_error", "unavailable",
}

// hostedErrors may answer any tenant or device route of a hosted gateway.
var hostedErrors = []string{"quota_exceeded"}

var (
	channelAuth = []string{"channel_id_required", "invalid_channel_id", "password_required", "invalid_password",
		"channel_not_found", "password_mismatch", "too_many_attempts", "busy"}
	eventFields = []string{"invalid_op_id", "invalid_thing_id", "invalid_event_id", "status_required", "status_too_long",
		"message_required", "message_too_long", "severity_required", "invalid_severity", "event_time_required", "invalid_event_time",
		"invalid_started_at", "started_at_forbidden", "invalid_ended_at", "ended_at_forbidden", "too_many_tags", "invalid_tag",
		"too_many_images", "invalid_image", "invalid_attrs", "invalid_metadata", "attrs_too_large", "op_id_conflict",
		"thing_id_mismatch", "rate_limited", "dispatch_partial_failure", "dispatch_timeout", "integrity_error"}
	deviceKey = []string{"device_key_required", "invalid_device_key", "device_key_not_found"}
	tenantID  = []string{"tenant_id_required", "invalid_tenant_id", "tenant_not_found"}
)

func join(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// routeErrors are the codes of each route beyond commonErrors.
var routeErrors = map[string][]string{
	"/event/create":  join(channelAuth, eventFields, []string{"event_id_forbidden_on_create", "title_required", "event_exists"}),
	"/event/update":  join(channelAuth, eventFields, []string{"event_id_required", "event_not_found", "event_closed"}),
	"/event/close":   join(channelAuth, eventFields, []string{"event_id_required", "event_not_found", "event_closed"}),
	"/event/get":     join(channelAuth, []string{"event_id_required", "invalid_event_id", "event_not_found", "integrity_error"}),
	"/event/history": join(channelAuth, []string{"event_id_required", "invalid_event_id", "event_not_found", "integrity_error"}),
	"/event/list":    join(channelAuth, []string{"invalid_event_state", "invalid_limit", "invalid_cursor", "integrity_error"}),
	"/channel/create": {"channel_name_required", "invalid_channel_name", "password_required", "invalid_password",
		"rate_limited", "busy"},
	"/channel/subscribe":   join(deviceKey, channelAuth, []string{"channel_name_required", "invalid_channel_name", "channel_binding_invalid", "rate_limited"}),
	"/channel/unsubscribe": join(deviceKey, []string{"channel_id_required", "invalid_channel_id", "channel_not_found"}),
	"/channel/device": join(deviceKey, []string{"invalid_channel_type", "invalid_platform", "platform_mismatch",
		"provider_token_forbidden_for_private_channel", "provider_token_required", "apns_channel_requires_apple_platform",
		"fcm_channel_requires_android_platform", "invalid_provider_token", "invalid_webhook_url", "webhook_url_not_allowed"}),
	"/channel/device/attempts": join(deviceKey, []string{"invalid_limit"}),
	"/device/register":         {"invalid_platform", "invalid_device_key", "rate_limited"},
	"/messages/pull":           join(deviceKey, []string{"invalid_limit"}),
	"/messages/ack":            join(deviceKey, []string{"delivery_id_required", "invalid_delivery_id"}),
	"/activity/register": join(deviceKey, []string{"live_activity_requires_ios", "invalid_activity_request", "invalid_activity_key",
		"activity_token_required", "invalid_activity_token", "device_not_subscribed", "channel_id_required", "invalid_channel_id",
		"event_id_required", "invalid_event_id"}),
	"/activity/unregister": join(deviceKey, []string{"live_activity_requires_ios", "invalid_activity_request", "invalid_activity_key",
		"activity_token_required", "invalid_activity_token", "channel_id_required", "invalid_channel_id", "event_id_required",
		"invalid_event_id"}),
	"/device/stream": join(deviceKey, []string{"too_many_streams", "invalid_limit"}),
	"/device/ws":     join(deviceKey, []string{"too_many_streams", "invalid_limit"}),
	// route_not_found: the admin routes exist in hosted mode only.
	"/admin/tenant/create": {"tenant_name_required", "invalid_tenant_name", "route_not_found"},
	"/admin/tenant/update": join(tenantID, []string{"tenant_name_required", "invalid_tenant_name", "route_not_found"}),
	"/admin/tenant/delete": join(tenantID, []string{"route_not_found"}),
	"/admin/tenant/usage":  join(tenantID, []string{"route_not_found"}),
	"/admin/tenant/list":   {"route_not_found"},
}
