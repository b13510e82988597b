package validate_test

import (
	"testing"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

type getEventErrorCase struct {
	name     string
	req      *apiv1.GetEventRequest
	wantCode string
}

var getEventErrorCases = []getEventErrorCase{
	{"nil request", nil, "channel_id_required"},
	{"bad channel", &apiv1.GetEventRequest{ChannelId: "x", Password: validPassword, EventId: "e"}, "invalid_channel_id"},
	{"no password", &apiv1.GetEventRequest{ChannelId: validChannel, EventId: "e"}, "password_required"},
	{"short password", &apiv1.GetEventRequest{ChannelId: validChannel, Password: "p", EventId: "e"}, "invalid_password"},
	{"no event_id", &apiv1.GetEventRequest{ChannelId: validChannel, Password: validPassword}, "event_id_required"},
	{"blank event_id", &apiv1.GetEventRequest{ChannelId: validChannel, Password: validPassword, EventId: " "}, "event_id_required"},
	{"bad event_id", &apiv1.GetEventRequest{ChannelId: validChannel, Password: validPassword, EventId: "a.b"}, "invalid_event_id"},
	{"order: password before event_id", &apiv1.GetEventRequest{ChannelId: validChannel, EventId: "a.b"}, "password_required"},
}

func TestGetEventErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range getEventErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, _, got := validate.GetEvent(tt.req)
			if got == nil || got.Code != tt.wantCode {
				t.Fatalf("GetEvent = %v, want %s", got, tt.wantCode)
			}
		})
	}
}

func TestGetEvent(t *testing.T) {
	t.Parallel()
	ch, pw, id, err := validate.GetEvent(&apiv1.GetEventRequest{
		ChannelId: "06j0fzg1y8xgg14vtq4y3g10mr", Password: validPassword, EventId: "Evt:1",
	})
	if err != nil {
		t.Fatalf("GetEvent = %v", err)
	}
	eq(t, "channel", ch, validChannel)
	eq(t, "password", pw, validPassword)
	eq(t, "event_id", id, "Evt:1")
}

type listEventsErrorCase struct {
	name     string
	req      *apiv1.ListEventsRequest
	wantCode string
}

func listReq(edit func(*apiv1.ListEventsRequest)) *apiv1.ListEventsRequest {
	r := &apiv1.ListEventsRequest{ChannelId: validChannel, Password: validPassword}
	edit(r)
	return r
}

var listEventsErrorCases = []listEventsErrorCase{
	{"nil request", nil, "channel_id_required"},
	{"no channel", listReq(func(r *apiv1.ListEventsRequest) { r.ChannelId = "" }), "channel_id_required"},
	{"no password", listReq(func(r *apiv1.ListEventsRequest) { r.Password = "" }), "password_required"},
	{"bad state", listReq(func(r *apiv1.ListEventsRequest) { r.EventState = "OPEN" }), "invalid_event_state"},
	{"limit zero", listReq(func(r *apiv1.ListEventsRequest) { r.Limit = ptr(int32(0)) }), "invalid_limit"},
	{"limit negative", listReq(func(r *apiv1.ListEventsRequest) { r.Limit = ptr(int32(-1)) }), "invalid_limit"},
	{"limit 501", listReq(func(r *apiv1.ListEventsRequest) { r.Limit = ptr(int32(501)) }), "invalid_limit"},
	{"cursor padding", listReq(func(r *apiv1.ListEventsRequest) { r.Cursor = "abc=" }), "invalid_cursor"},
	{"cursor std alphabet", listReq(func(r *apiv1.ListEventsRequest) { r.Cursor = "a+b/" }), "invalid_cursor"},
	{"cursor 513", listReq(func(r *apiv1.ListEventsRequest) { r.Cursor = n("a", 513) }), "invalid_cursor"},
	{"order: state before limit", listReq(func(r *apiv1.ListEventsRequest) { r.EventState = "x"; r.Limit = ptr(int32(0)) }), "invalid_event_state"},
	{"order: limit before cursor", listReq(func(r *apiv1.ListEventsRequest) { r.Limit = ptr(int32(0)); r.Cursor = "=" }), "invalid_limit"},
}

func TestListEventsErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range listEventsErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q, got := validate.ListEvents(tt.req)
			if got == nil || got.Code != tt.wantCode {
				t.Fatalf("ListEvents = %+v, %v; want %s", q, got, tt.wantCode)
			}
		})
	}
}

func TestListEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  *apiv1.ListEventsRequest
		want validate.ListQuery
	}{
		{"defaults", listReq(func(r *apiv1.ListEventsRequest) {}),
			validate.ListQuery{ChannelID: validChannel, Password: validPassword, Limit: 50}},
		{"ongoing any case", listReq(func(r *apiv1.ListEventsRequest) { r.EventState = "Ongoing" }),
			validate.ListQuery{ChannelID: validChannel, Password: validPassword, State: validate.StateOngoing, Limit: 50}},
		{"closed trimmed", listReq(func(r *apiv1.ListEventsRequest) { r.EventState = " closed " }),
			validate.ListQuery{ChannelID: validChannel, Password: validPassword, State: validate.StateClosed, Limit: 50}},
		{"limit 1", listReq(func(r *apiv1.ListEventsRequest) { r.Limit = ptr(int32(1)) }),
			validate.ListQuery{ChannelID: validChannel, Password: validPassword, Limit: 1}},
		{"limit 500 and cursor", listReq(func(r *apiv1.ListEventsRequest) { r.Limit = ptr(int32(500)); r.Cursor = "eyJ0IjoxfQ_-" }),
			validate.ListQuery{ChannelID: validChannel, Password: validPassword, Limit: 500, Cursor: "eyJ0IjoxfQ_-"}},
		{"cursor 512", listReq(func(r *apiv1.ListEventsRequest) { r.Cursor = n("A", 512) }),
			validate.ListQuery{ChannelID: validChannel, Password: validPassword, Limit: 50, Cursor: n("A", 512)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := validate.ListEvents(tt.req)
			if err != nil {
				t.Fatalf("ListEvents = %v", err)
			}
			if got != tt.want {
				t.Errorf("ListEvents = %+v, want %+v", got, tt.want)
			}
		})
	}
}
