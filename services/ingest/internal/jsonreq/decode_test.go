package jsonreq_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/jsonreq"
)

func ptr[T any](v T) *T { return &v }

func eventReq() proto.Message { return &apiv1.EventRequest{} }
func listReq() proto.Message  { return &apiv1.ListEventsRequest{} }
func opResult() proto.Message { return &apiv1.EventOpResult{} }
func listResp() proto.Message { return &apiv1.ListEventsResponse{} }
func pullResp() proto.Message { return &apiv1.PullResponse{} }

// nested returns "[[[…1…]]]" with depth brackets.
func nested(depth int) string {
	return strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth)
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		body     string
		into     func() proto.Message
		wantCode string
		// wantMsg, when set, must be the whole message.
		wantMsg string
	}{
		// Syntax.
		{name: "empty body", body: "", into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "whitespace only", body: " \n\t ", into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "unterminated object", body: "{", into: eventReq, wantCode: "invalid_json_syntax"},
		// Keys given twice, at any depth (DESIGN.md §8.4).
		{name: "duplicate top-level key", body: `{"title":"a","title":"b"}`, into: eventReq,
			wantCode: "duplicate_field", wantMsg: `field "title" is given more than once`},
		{name: "duplicate with another type", body: `{"title":1,"title":"ok"}`, into: eventReq, wantCode: "duplicate_field"},
		{name: "duplicate then null", body: `{"op_id":"x","op_id":null}`, into: eventReq, wantCode: "duplicate_field"},
		{name: "duplicate list", body: `{"tags":["a"],"tags":["b"]}`, into: eventReq, wantCode: "duplicate_field"},
		{name: "duplicate inside Struct", body: `{"attrs":{"a":1,"a":2}}`, into: eventReq,
			wantCode: "duplicate_field", wantMsg: `field "attrs.a" is given more than once`},
		{name: "duplicate inside nested Struct", body: `{"attrs":{"o":{"k":1,"k":1}}}`, into: eventReq,
			wantCode: "duplicate_field", wantMsg: `field "attrs.o.k" is given more than once`},
		{name: "duplicate inside map", body: `{"items":[{"payload":{"m":"1","m":"2"}}]}`, into: pullResp,
			wantCode: "duplicate_field", wantMsg: `field "items[0].payload.m" is given more than once`},
		{name: "duplicate inside nested message", body: `{"events":[{"event_id":"e1","event_id":"e2"}]}`, into: listResp,
			wantCode: "duplicate_field", wantMsg: `field "events[0].event_id" is given more than once`},
		{name: "trailing garbage", body: `{"a":1} x`, into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "two objects", body: `{}{}`, into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "trailing comma", body: `{"title":"a",}`, into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "single quotes", body: `{'title':'a'}`, into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "missing value", body: `{"title":}`, into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "leading zero", body: `{"limit":01}`, into: listReq, wantCode: "invalid_json_syntax"},
		{name: "bare minus", body: `{"limit":-}`, into: listReq, wantCode: "invalid_json_syntax"},
		{name: "NaN literal", body: `{"limit":NaN}`, into: listReq, wantCode: "invalid_json_syntax"},
		{name: "invalid UTF-8", body: "{\"title\":\"\xff\"}", into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "raw control character", body: "{\"title\":\"a\nb\"}", into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "lone surrogate escape", body: `{"title":"\ud800"}`, into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "bad escape", body: `{"title":"\x"}`, into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "byte order mark", body: "\ufeff{}", into: eventReq, wantCode: "invalid_json_syntax"},
		{name: "malformed and too deep", body: `{"attrs":{"a":` + strings.Repeat("[", 80) + `}`, into: eventReq, wantCode: "invalid_json_syntax"},

		// Top level.
		{name: "array body", body: `[]`, into: eventReq, wantCode: "invalid_json_data",
			wantMsg: "the request body must be a JSON object"},
		{name: "string body", body: `"x"`, into: eventReq, wantCode: "invalid_json_data"},
		{name: "null body", body: `null`, into: eventReq, wantCode: "invalid_json_data"},
		{name: "number body", body: `1`, into: eventReq, wantCode: "invalid_json_data"},

		// Unknown keys.
		{name: "camelCase alias", body: `{"channelId":"x"}`, into: eventReq, wantCode: "unknown_field",
			wantMsg: `unknown field "channelId"`},
		{name: "upper case", body: `{"CHANNEL_ID":"x"}`, into: eventReq, wantCode: "unknown_field",
			wantMsg: `unknown field "CHANNEL_ID"`},
		{name: "mixed case", body: `{"Channel_Id":"x"}`, into: eventReq, wantCode: "unknown_field",
			wantMsg: `unknown field "Channel_Id"`},
		{name: "bogus", body: `{"bogus":1}`, into: eventReq, wantCode: "unknown_field",
			wantMsg: `unknown field "bogus"`},
		{name: "first unknown in document order", body: `{"channel_id":"x","zzz":1,"aaa":2}`, into: eventReq,
			wantCode: "unknown_field", wantMsg: `unknown field "zzz"`},
		{name: "unknown wins over a type error", body: `{"channel_id":1,"bogus":2}`, into: eventReq,
			wantCode: "unknown_field"},
		{name: "unknown in a nested message", body: `{"delivery":{"targets":1,"bogus":2}}`, into: opResult,
			wantCode: "unknown_field", wantMsg: `unknown field "delivery.bogus"`},
		{name: "unknown in a repeated message", body: `{"events":[{},{"eventId":"a"}]}`, into: listResp,
			wantCode: "unknown_field", wantMsg: `unknown field "events[1].eventId"`},
		{name: "long unknown key is shortened", body: `{"` + strings.Repeat("k", 100) + `":1}`, into: eventReq,
			wantCode: "unknown_field", wantMsg: `unknown field "` + strings.Repeat("k", 64) + `…"`},

		// Types.
		{name: "number for string", body: `{"channel_id":1}`, into: eventReq, wantCode: "invalid_json_data",
			wantMsg: `field "channel_id": expected a string`},
		{name: "string for ListValue", body: `{"tags":"a"}`, into: eventReq, wantCode: "invalid_json_data",
			wantMsg: `field "tags": expected an array`},
		{name: "array for Struct", body: `{"attrs":[]}`, into: eventReq, wantCode: "invalid_json_data",
			wantMsg: `field "attrs": expected an object`},
		{name: "bool for optional string", body: `{"op_id":true}`, into: eventReq, wantCode: "invalid_json_data"},
		{name: "fraction for int32", body: `{"limit":1.5}`, into: listReq, wantCode: "invalid_json_data",
			wantMsg: `field "limit": expected an integer`},
		{name: "exponent for int32", body: `{"limit":1e3}`, into: listReq, wantCode: "invalid_json_data"},
		{name: "integral fraction for int32", body: `{"limit":1.0}`, into: listReq, wantCode: "invalid_json_data"},
		{name: "string for int32", body: `{"limit":"5"}`, into: listReq, wantCode: "invalid_json_data"},
		{name: "int32 overflow", body: `{"limit":2147483648}`, into: listReq, wantCode: "invalid_json_data",
			wantMsg: `field "limit": expected an integer in the int32 range`},
		{name: "negative uint32", body: `{"delivery":{"targets":-1}}`, into: opResult, wantCode: "invalid_json_data",
			wantMsg: `field "delivery.targets": expected an integer in the uint32 range`},
		{name: "string for bool", body: `{"accepted":"true"}`, into: opResult, wantCode: "invalid_json_data",
			wantMsg: `field "accepted": expected true or false`},
		{name: "null in repeated string", body: `{"events":[{"tags":["a",null]}]}`, into: listResp,
			wantCode: "invalid_json_data", wantMsg: `field "events[0].tags[1]": expected a string`},
		{name: "number for message", body: `{"delivery":3}`, into: opResult, wantCode: "invalid_json_data",
			wantMsg: `field "delivery": expected an object`},
		{name: "object for repeated", body: `{"events":{}}`, into: listResp, wantCode: "invalid_json_data"},
		{name: "number out of double range in Value", body: `{"event_time":1e400}`, into: eventReq,
			wantCode: "invalid_json_data", wantMsg: `field "event_time": number out of the float64 range`},
		{name: "number out of range inside Struct", body: `{"attrs":{"a":{"b":[1,-1e999]}}}`, into: eventReq,
			wantCode: "invalid_json_data", wantMsg: `field "attrs.a.b[1]": number out of the float64 range`},

		// Depth.
		{name: "too deep", body: `{"attrs":{"a":` + nested(63) + `}}`, into: eventReq, wantCode: "invalid_json_data",
			wantMsg: "JSON nesting is deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := jsonreq.Decode([]byte(tt.body), tt.into())
			if got == nil {
				t.Fatalf("Decode(%q) = nil, want %s", tt.body, tt.wantCode)
			}
			if got.Code != tt.wantCode {
				t.Fatalf("Decode(%q) code = %s (%s), want %s", tt.body, got.Code, got.Msg, tt.wantCode)
			}
			if tt.wantMsg != "" && got.Msg != tt.wantMsg {
				t.Errorf("Decode(%q) message = %q, want %q", tt.body, got.Msg, tt.wantMsg)
			}
			if _, ok := apierr.Codes[got.Code]; !ok {
				t.Errorf("code %q is not in apierr.Codes", got.Code)
			}
		})
	}
}

func TestDecodeValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		into func() proto.Message
		want proto.Message
	}{
		{
			name: "event request",
			body: `{"channel_id":"06J0FZG1Y8XGG14VTQ4Y3G10MR","password":"p4ssw0rd!","op_id":"op-1",
				"title":"Deploy","status":"running","message":"step 1","severity":"normal",
				"event_time":1713750000,"started_at":"1713750000","tags":["a","b"],
				"attrs":{"n":1.5,"s":"x","b":true,"z":null,"o":{"k":"v"}},"metadata":{"m":"1"},"ciphertext":"abc"}`,
			into: eventReq,
			want: &apiv1.EventRequest{
				ChannelId: "06J0FZG1Y8XGG14VTQ4Y3G10MR", Password: "p4ssw0rd!", OpId: ptr("op-1"),
				Title: "Deploy", Status: "running", Message: "step 1", Severity: "normal",
				EventTime: structpb.NewNumberValue(1713750000),
				StartedAt: structpb.NewStringValue("1713750000"),
				Tags:      &structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("a"), structpb.NewStringValue("b")}},
				Attrs: &structpb.Struct{Fields: map[string]*structpb.Value{
					"n": structpb.NewNumberValue(1.5),
					"s": structpb.NewStringValue("x"),
					"b": structpb.NewBoolValue(true),
					"z": structpb.NewNullValue(),
					"o": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("v")}}),
				}},
				Metadata:   &structpb.Struct{Fields: map[string]*structpb.Value{"m": structpb.NewStringValue("1")}},
				Ciphertext: "abc",
			},
		},
		{name: "null leaves fields unset",
			body: `{"event_time":null,"op_id":null,"tags":null,"attrs":null,"title":null}`, into: eventReq,
			want: &apiv1.EventRequest{}},
		{name: "null inside Struct is NullValue", body: `{"attrs":{"a":null}}`, into: eventReq,
			want: &apiv1.EventRequest{Attrs: &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewNullValue()}}}},
		{name: "null inside ListValue is NullValue", body: `{"tags":[null]}`, into: eventReq,
			want: &apiv1.EventRequest{Tags: &structpb.ListValue{Values: []*structpb.Value{structpb.NewNullValue()}}}},
		{name: "empty optional string is present", body: `{"op_id":""}`, into: eventReq,
			want: &apiv1.EventRequest{OpId: ptr("")}},
		{name: "zero optional int32 is present", body: `{"limit":0}`, into: listReq,
			want: &apiv1.ListEventsRequest{Limit: ptr(int32(0))}},
		{name: "negative zero int32", body: `{"limit":-0}`, into: listReq,
			want: &apiv1.ListEventsRequest{Limit: ptr(int32(0))}},
		{name: "empty object Struct is present", body: `{"attrs":{}}`, into: eventReq,
			want: &apiv1.EventRequest{Attrs: &structpb.Struct{Fields: map[string]*structpb.Value{}}}},
		{name: "empty array ListValue is present", body: `{"tags":[]}`, into: eventReq,
			want: &apiv1.EventRequest{Tags: &structpb.ListValue{Values: []*structpb.Value{}}}},
		{name: "string event_time", body: `{"event_time":"1713750000"}`, into: eventReq,
			want: &apiv1.EventRequest{EventTime: structpb.NewStringValue("1713750000")}},
		{name: "escapes", body: `{"title":"a\u00e9\ud83d\ude00\n\"\\\/"}`, into: eventReq,
			want: &apiv1.EventRequest{Title: "aé😀\n\"\\/"}},
		{name: "nested messages", body: `{"events":[{"event_id":"e1","version":3,"ended_at":1,"tags":["x"]}],"next_cursor":""}`,
			into: listResp,
			want: &apiv1.ListEventsResponse{
				Events:     []*apiv1.Event{{EventId: "e1", Version: 3, EndedAt: ptr(int64(1)), Tags: []string{"x"}}},
				NextCursor: ptr(""),
			}},
		{name: "Struct as top-level message uses its map field", body: `{"fields":{"a":null,"b":[1]}}`,
			into: func() proto.Message { return &structpb.Struct{} },
			want: &structpb.Struct{Fields: map[string]*structpb.Value{
				"a": structpb.NewNullValue(),
				"b": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1)}}),
			}}},
		{name: "exactly max depth", body: `{"attrs":{"a":` + nested(62) + `}}`, into: eventReq,
			want: nil /* checked for success only */},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.into()
			if err := jsonreq.Decode([]byte(tt.body), got); err != nil {
				t.Fatalf("Decode(%q) = %v, want success", tt.body, err)
			}
			if tt.want == nil {
				return
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("Decode(%q) =\n%v\nwant\n%v", tt.body, got, tt.want)
			}
		})
	}
}

func TestDecodeResetsMessage(t *testing.T) {
	t.Parallel()
	m := &apiv1.EventRequest{Title: "old", OpId: ptr("old")}
	if err := jsonreq.Decode([]byte(`{"status":"new"}`), m); err != nil {
		t.Fatalf("Decode = %v", err)
	}
	want := &apiv1.EventRequest{Status: "new"}
	if !proto.Equal(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
}

func TestDecodeNilMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    proto.Message
	}{
		{name: "nil interface", m: nil},
		{name: "typed nil pointer", m: (*apiv1.EventRequest)(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := jsonreq.Decode([]byte(`{}`), tt.m)
			if got == nil || got.Code != "internal_error" {
				t.Errorf("Decode(nil) = %v, want internal_error", got)
			}
		})
	}
}

// TestDecodeConcurrent exercises the descriptor cache from many goroutines (run with -race).
func TestDecodeConcurrent(t *testing.T) {
	t.Parallel()
	body := []byte(`{"channel_id":"06J0FZG1Y8XGG14VTQ4Y3G10MR","limit":10,"event_state":"ongoing"}`)
	want := &apiv1.ListEventsRequest{ChannelId: "06J0FZG1Y8XGG14VTQ4Y3G10MR", Limit: ptr(int32(10)), EventState: "ongoing"}
	for i := range 8 {
		t.Run("worker", func(t *testing.T) {
			t.Parallel()
			for range 200 {
				got := &apiv1.ListEventsRequest{}
				if err := jsonreq.Decode(body, got); err != nil {
					t.Fatalf("worker %d: Decode = %v", i, err)
				}
				if !proto.Equal(got, want) {
					t.Fatalf("worker %d: got %v", i, got)
				}
			}
		})
	}
}
