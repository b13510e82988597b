package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestErrorCodes sends one bad request per error code (and a few orderings) through HTTP.
func TestErrorCodes(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)
	ev := g.mustOK(t, "/event/create", createBody(ch, obj{"thing_id": "db-1"}))["event_id"].(string)
	closedEv := g.mustOK(t, "/event/create", createBody(ch, nil))["event_id"].(string)
	g.mustOK(t, "/event/close", opBody(ch, closedEv, nil))
	// A valid channel id that no channel has.
	const ghost = "06J0FZG1Y8XGG14VTQ4Y3G10MR"

	long := func(n int) string { return strings.Repeat("x", n) }
	many := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = "https://example.com/" + strings.Repeat("a", i+1)
		}
		return out
	}
	tests := []struct {
		name   string
		path   string
		body   obj
		status int
		code   string
	}{
		{"channel_id missing", "/event/create", createBody(ch, obj{"channel_id": nil}), 400, "channel_id_required"},
		{"channel_id blank", "/event/create", createBody(" ", nil), 400, "channel_id_required"},
		{"channel_id malformed", "/event/create", createBody("not-a-channel", nil), 400, "invalid_channel_id"},
		{"password missing", "/event/create", createBody(ch, obj{"password": nil}), 400, "password_required"},
		{"password short", "/event/create", createBody(ch, obj{"password": "short"}), 400, "invalid_password"},
		{"op_id malformed", "/event/create", createBody(ch, obj{"op_id": "a b"}), 400, "invalid_op_id"},
		{"thing_id malformed", "/event/create", createBody(ch, obj{"thing_id": "a.b"}), 400, "invalid_thing_id"},
		{"event_id on create", "/event/create", createBody(ch, obj{"event_id": "e1"}), 400, "event_id_forbidden_on_create"},
		{"event_id missing on update", "/event/update", opBody(ch, "x", obj{"event_id": nil}), 400, "event_id_required"},
		{"event_id malformed", "/event/close", opBody(ch, "a/b", nil), 400, "invalid_event_id"},
		{"title missing", "/event/create", createBody(ch, obj{"title": "  "}), 400, "title_required"},
		{"status missing", "/event/create", createBody(ch, obj{"status": nil}), 400, "status_required"},
		{"status long", "/event/update", opBody(ch, ev, obj{"status": long(25)}), 400, "status_too_long"},
		{"message missing", "/event/update", opBody(ch, ev, obj{"message": ""}), 400, "message_required"},
		{"message long", "/event/create", createBody(ch, obj{"message": long(513)}), 400, "message_too_long"},
		{"severity missing", "/event/close", opBody(ch, ev, obj{"severity": nil}), 400, "severity_required"},
		{"severity unknown", "/event/create", createBody(ch, obj{"severity": "warning"}), 400, "invalid_severity"},
		{"event_time missing", "/event/create", createBody(ch, obj{"event_time": nil}), 400, "event_time_required"},
		{"event_time fractional", "/event/update", opBody(ch, ev, obj{"event_time": 1713750000.5}), 400, "invalid_event_time"},
		{"event_time text", "/event/update", opBody(ch, ev, obj{"event_time": "soon"}), 400, "invalid_event_time"},
		{"event_time zero", "/event/update", opBody(ch, ev, obj{"event_time": 0}), 400, "invalid_event_time"},
		{"started_at bad", "/event/create", createBody(ch, obj{"started_at": -1}), 400, "invalid_started_at"},
		{"started_at on update", "/event/update", opBody(ch, ev, obj{"started_at": 1713750000}), 400, "started_at_forbidden"},
		{"ended_at bad", "/event/close", opBody(ch, ev, obj{"ended_at": "x"}), 400, "invalid_ended_at"},
		{"ended_at on create", "/event/create", createBody(ch, obj{"ended_at": 1713750000}), 400, "ended_at_forbidden"},
		{"too many tags", "/event/create", createBody(ch, obj{"tags": many(33)}), 400, "too_many_tags"},
		{"tag blank", "/event/create", createBody(ch, obj{"tags": []any{"ok", " "}}), 400, "invalid_tag"},
		{"too many images", "/event/create", createBody(ch, obj{"images": many(33)}), 400, "too_many_images"},
		{"image not a URL", "/event/create", createBody(ch, obj{"images": []any{"/relative.png"}}), 400, "invalid_image"},
		{"attrs array", "/event/create", createBody(ch, obj{"attrs": obj{"a": []any{1}}}), 400, "invalid_attrs"},
		{"attrs deep", "/event/create", createBody(ch, obj{"attrs": obj{"a": obj{"b": obj{"c": 1}}}}), 400, "invalid_attrs"},
		{"metadata object value", "/event/create", createBody(ch, obj{"metadata": obj{"a": obj{}}}), 400, "invalid_metadata"},
		{"channel name missing", "/channel/create", obj{"password": "secret-123"}, 400, "channel_name_required"},
		{"channel name control", "/channel/create", obj{"channel_name": "a\u0007b", "password": "secret-123"}, 400, "invalid_channel_name"},
		{"list state", "/event/list", obj{"channel_id": ch, "password": "secret-123", "event_state": "OPEN"}, 400, "invalid_event_state"},
		{"list limit", "/event/list", obj{"channel_id": ch, "password": "secret-123", "limit": 501}, 400, "invalid_limit"},
		{"list cursor", "/event/list", obj{"channel_id": ch, "password": "secret-123", "cursor": "bm9wZQ"}, 400, "invalid_cursor"},
		{"wrong JSON type", "/event/create", createBody(ch, obj{"title": 5}), 400, "invalid_json_data"},
		{"camelCase field", "/event/create", createBody(ch, obj{"eventTime": 1}), 400, "unknown_field"},
		{"unknown field", "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev, "x": 1}, 400, "unknown_field"},
		{"unknown channel", "/event/create", createBody(ghost, nil), 404, "channel_not_found"},
		{"wrong password", "/event/update", opBody(ch, ev, obj{"password": "wrong-password"}), 403, "password_mismatch"},
		{"update of unknown event", "/event/update", opBody(ch, "nope", nil), 404, "event_not_found"},
		{"get of unknown event", "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": "nope"}, 404, "event_not_found"},
		{"history of unknown event", "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": "nope"}, 404, "event_not_found"},
		{"update after close", "/event/update", opBody(ch, closedEv, nil), 409, "event_closed"},
		{"other thing_id", "/event/update", opBody(ch, ev, obj{"thing_id": "db-2"}), 409, "thing_id_mismatch"},
		{"ended_at before started_at", "/event/close", opBody(ch, ev, obj{"ended_at": 1000000000}), 400, "invalid_ended_at"},
		// Order of checks (DESIGN.md §6.2): field rules before the channel, the channel before
		// the lifecycle, earlier fields before later ones.
		{"field rules before channel", "/event/create", createBody(ghost, obj{"status": nil}), 400, "status_required"},
		{"channel before lifecycle", "/event/update", opBody(ch, "nope", obj{"password": "wrong-password"}), 403, "password_mismatch"},
		{"channel_id before the rest", "/event/create", obj{"title": 1}, 400, "invalid_json_data"},
		{"password before event_id", "/event/create", createBody(ch, obj{"password": nil, "event_id": "e"}), 400, "password_required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := g.post(t, tt.path, tt.body)
			if r.status != tt.status || r.code() != tt.code {
				t.Fatalf("got %d %s, want %d %s: %s", r.status, r.code(), tt.status, tt.code, r.raw)
			}
		})
	}
}

// TestTransportErrors covers checks 1–3 of DESIGN.md §6.2 and routing.
func TestTransportErrors(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{token: "gw-token"})
	auth := map[string]string{"Authorization": "Bearer gw-token"}
	valid := []byte(`{"channel_name":"x","password":"secret-123"}`)
	big := bytes.Repeat([]byte(" "), 32769)
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        []byte
		header      map[string]string
		status      int
		code        string
	}{
		{"no token", "POST", "/channel/create", "application/json", valid, nil, 401, "authentication_failed"},
		{"wrong token", "POST", "/channel/create", "application/json", valid, map[string]string{"Authorization": "Bearer nope"}, 401, "authentication_failed"},
		{"token without scheme", "POST", "/channel/create", "application/json", valid, map[string]string{"Authorization": "gw-token"}, 401, "authentication_failed"},
		{"token before size", "POST", "/channel/create", "application/json", big, nil, 401, "authentication_failed"},
		{"token before routing", "POST", "/nope", "application/json", valid, nil, 401, "authentication_failed"},
		{"too large", "POST", "/channel/create", "application/json", big, auth, 413, "payload_too_large"},
		{"size before content type", "POST", "/channel/create", "text/plain", big, auth, 413, "payload_too_large"},
		{"no content type", "POST", "/channel/create", "", valid, auth, 400, "missing_json_content_type"},
		{"form content type", "POST", "/channel/create", "application/x-www-form-urlencoded", valid, auth, 400, "missing_json_content_type"},
		{"empty body", "POST", "/channel/create", "application/json", nil, auth, 400, "invalid_json_syntax"},
		{"malformed", "POST", "/channel/create", "application/json", []byte(`{"channel_name":`), auth, 400, "invalid_json_syntax"},
		{"trailing data", "POST", "/channel/create", "application/json", append(valid, " x"...), auth, 400, "invalid_json_syntax"},
		{"not an object", "POST", "/channel/create", "application/json", []byte(`["x"]`), auth, 400, "invalid_json_data"},
		{"unknown route", "POST", "/event/delete", "application/json", valid, auth, 404, "route_not_found"},
		{"wrong method", "GET", "/event/create", "", nil, auth, 405, "method_not_allowed"},
		{"wrong method on health", "POST", "/healthz", "", nil, nil, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := g.request(t, tt.method, tt.path, tt.contentType, tt.body, tt.header)
			if r.status != tt.status || r.code() != tt.code {
				t.Fatalf("got %d %s, want %d %s: %s", r.status, r.code(), tt.status, tt.code, r.raw)
			}
		})
	}
	// Health checks need no token; a charset parameter is fine; a sane X-Request-Id is echoed.
	if r := g.request(t, "GET", "/healthz", "", nil, nil); r.status != http.StatusOK {
		t.Fatalf("healthz: %d %s", r.status, r.raw)
	}
	if r := g.request(t, "GET", "/readyz", "", nil, nil); r.status != http.StatusOK {
		t.Fatalf("readyz: %d %s", r.status, r.raw)
	}
	r := g.request(t, "POST", "/channel/create", "application/json; charset=utf-8", valid,
		map[string]string{"Authorization": "bearer gw-token", "X-Request-Id": "req-123"})
	if r.status != http.StatusOK || r.header.Get("X-Request-Id") != "req-123" {
		t.Fatalf("authorised create: %d %s (request id %q)", r.status, r.raw, r.header.Get("X-Request-Id"))
	}
}
