package validate_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

const (
	validChannel  = "06J0FZG1Y8XGG14VTQ4Y3G10MR"
	validPassword = "p4ssw0rd!"
)

func ptr[T any](v T) *T { return &v }

func num(f float64) *structpb.Value { return structpb.NewNumberValue(f) }
func str(s string) *structpb.Value  { return structpb.NewStringValue(s) }

func list(vs ...*structpb.Value) *structpb.ListValue {
	if vs == nil {
		vs = []*structpb.Value{}
	}
	return &structpb.ListValue{Values: vs}
}

func strs(ss ...string) *structpb.ListValue {
	l := list()
	for _, s := range ss {
		l.Values = append(l.Values, str(s))
	}
	return l
}

func obj(kv map[string]*structpb.Value) *structpb.Struct { return &structpb.Struct{Fields: kv} }

func objValue(kv map[string]*structpb.Value) *structpb.Value { return structpb.NewStructValue(obj(kv)) }

// n repeats s n times.
func n(s string, count int) string { return strings.Repeat(s, count) }

// validEvent returns a request that passes every rule of route.
func validEvent(route validate.Route) *apiv1.EventRequest {
	r := &apiv1.EventRequest{
		ChannelId: validChannel,
		Password:  validPassword,
		Title:     "Deploy api",
		Status:    "running",
		Message:   "step 1 of 3",
		Severity:  "normal",
		EventTime: num(1713750000),
	}
	if route != validate.RouteCreate {
		r.EventId = ptr("evt-1")
	}
	return r
}

// eventErrorCase is one rejected request: validEvent(route) changed by edit.
type eventErrorCase struct {
	name     string
	route    validate.Route
	edit     func(*apiv1.EventRequest)
	wantCode string
}

var eventErrorCases = []eventErrorCase{
	// 1. channel_id
	{"channel_id empty", validate.RouteCreate, func(r *apiv1.EventRequest) { r.ChannelId = "" }, "channel_id_required"},
	{"channel_id blank", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.ChannelId = " \t " }, "channel_id_required"},
	{"channel_id too short", validate.RouteCreate, func(r *apiv1.EventRequest) { r.ChannelId = validChannel[:25] }, "invalid_channel_id"},
	{"channel_id too long", validate.RouteCreate, func(r *apiv1.EventRequest) { r.ChannelId = validChannel + "0" }, "invalid_channel_id"},
	{"channel_id with U", validate.RouteCreate, func(r *apiv1.EventRequest) { r.ChannelId = "U" + validChannel[1:] }, "invalid_channel_id"},
	{"channel_id last symbol has low bits", validate.RouteCreate, func(r *apiv1.EventRequest) { r.ChannelId = validChannel[:25] + "S" }, "invalid_channel_id"},
	{"channel_id non-ASCII", validate.RouteCreate, func(r *apiv1.EventRequest) { r.ChannelId = "é" + validChannel[1:] }, "invalid_channel_id"},
	// 2. password
	{"password empty", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Password = "" }, "password_required"},
	{"password blank", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Password = n(" ", 10) }, "password_required"},
	{"password short", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Password = "1234567" }, "invalid_password"},
	{"password 7 multibyte characters", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Password = n("密", 7) }, "invalid_password"},
	{"password long", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Password = n("x", 129) }, "invalid_password"},
	// 3. op_id
	{"op_id empty", validate.RouteCreate, func(r *apiv1.EventRequest) { r.OpId = ptr("") }, "invalid_op_id"},
	{"op_id space", validate.RouteCreate, func(r *apiv1.EventRequest) { r.OpId = ptr("op 1") }, "invalid_op_id"},
	{"op_id dot", validate.RouteClose, func(r *apiv1.EventRequest) { r.OpId = ptr("op.1") }, "invalid_op_id"},
	{"op_id too long", validate.RouteCreate, func(r *apiv1.EventRequest) { r.OpId = ptr(n("a", 129)) }, "invalid_op_id"},
	// 4. thing_id
	{"thing_id empty", validate.RouteCreate, func(r *apiv1.EventRequest) { r.ThingId = ptr("") }, "invalid_thing_id"},
	{"thing_id too long", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.ThingId = ptr(n("a", 65)) }, "invalid_thing_id"},
	// 5. event_id
	{"event_id on create", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventId = ptr("evt-1") }, "event_id_forbidden_on_create"},
	{"empty event_id on create", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventId = ptr("") }, "event_id_forbidden_on_create"},
	{"event_id missing on update", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.EventId = nil }, "event_id_required"},
	{"event_id blank on close", validate.RouteClose, func(r *apiv1.EventRequest) { r.EventId = ptr("  ") }, "event_id_required"},
	{"event_id bad character", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.EventId = ptr("evt/1") }, "invalid_event_id"},
	{"event_id too long", validate.RouteClose, func(r *apiv1.EventRequest) { r.EventId = ptr(n("e", 65)) }, "invalid_event_id"},
	// 6. title
	{"title empty on create", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Title = "" }, "title_required"},
	{"title blank on create", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Title = " \n " }, "title_required"},
	// 8. status
	{"status empty", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.Status = "" }, "status_required"},
	{"status blank", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Status = "   " }, "status_required"},
	{"status 25 characters", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Status = n("é", 25) }, "status_too_long"},
	// 9. message
	{"message empty", validate.RouteClose, func(r *apiv1.EventRequest) { r.Message = "" }, "message_required"},
	{"message 513 characters", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Message = n("m", 513) }, "message_too_long"},
	// 10. severity
	{"severity empty", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Severity = " " }, "severity_required"},
	{"severity unknown", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Severity = "urgent" }, "invalid_severity"},
	// 11. event_time
	{"event_time missing", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = nil }, "event_time_required"},
	{"event_time null value", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.EventTime = structpb.NewNullValue() }, "event_time_required"},
	{"event_time fraction", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = num(1713750000.5) }, "invalid_event_time"},
	{"event_time zero", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = num(0) }, "invalid_event_time"},
	{"event_time negative", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = num(-5) }, "invalid_event_time"},
	{"event_time over 2^53", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = num(1<<53 + 2) }, "invalid_event_time"},
	{"event_time bool", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = structpb.NewBoolValue(true) }, "invalid_event_time"},
	{"event_time object", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = objValue(nil) }, "invalid_event_time"},
	{"event_time list", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = structpb.NewListValue(list(num(1))) }, "invalid_event_time"},
	{"event_time kind unset", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = &structpb.Value{} }, "invalid_event_time"},
	{"event_time empty string", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str("") }, "invalid_event_time"},
	{"event_time letters", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str("abc") }, "invalid_event_time"},
	{"event_time negative string", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str("-5") }, "invalid_event_time"},
	{"event_time plus string", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str("+5") }, "invalid_event_time"},
	{"event_time fraction string", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str("1.5") }, "invalid_event_time"},
	{"event_time zero string", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str("000") }, "invalid_event_time"},
	{"event_time string over 2^53", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str("9007199254740993") }, "invalid_event_time"},
	// 9007199254740993 sent as a JSON number arrives rounded to 2^53: refused, not stored as …992.
	{"event_time 2^53 (a rounded 2^53+1)", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = num(1 << 53) }, "invalid_event_time"},
	{"event_time string 2^53", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str("9007199254740992") }, "invalid_event_time"},
	{"started_at 2^53", validate.RouteCreate, func(r *apiv1.EventRequest) { r.StartedAt = num(1 << 53) }, "invalid_started_at"},
	{"event_time string overflows uint64", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str(n("9", 30)) }, "invalid_event_time"},
	// 12. started_at
	{"started_at invalid on create", validate.RouteCreate, func(r *apiv1.EventRequest) { r.StartedAt = str("soon") }, "invalid_started_at"},
	{"started_at on update", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.StartedAt = num(1713750000) }, "started_at_forbidden"},
	{"started_at on close", validate.RouteClose, func(r *apiv1.EventRequest) { r.StartedAt = str("") }, "started_at_forbidden"},
	// 13. ended_at
	{"ended_at invalid on close", validate.RouteClose, func(r *apiv1.EventRequest) { r.EndedAt = num(1.5) }, "invalid_ended_at"},
	{"ended_at on create", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EndedAt = num(1713750000) }, "ended_at_forbidden"},
	{"ended_at on update", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.EndedAt = num(1713750000) }, "ended_at_forbidden"},
	// 14. tags
	{"33 tags", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Tags = strs(strings.Split(n("t,", 32)+"t", ",")...) }, "too_many_tags"},
	{"tag not a string", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Tags = list(str("a"), num(1)) }, "invalid_tag"},
	{"tag null", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Tags = list(structpb.NewNullValue()) }, "invalid_tag"},
	{"tag blank", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.Tags = strs("a", "  ") }, "invalid_tag"},
	{"tag 65 characters", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Tags = strs(n("標", 65)) }, "invalid_tag"},
	// 15. images
	{"33 images", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Images = strs(strings.Split(n("http://x/,", 32)+"http://x/", ",")...)
	}, "too_many_images"},
	{"image ftp", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Images = strs("ftp://example.com/a.png") }, "invalid_image"},
	{"image relative", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Images = strs("/a.png") }, "invalid_image"},
	{"image no host", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Images = strs("http://") }, "invalid_image"},
	{"image port only", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Images = strs("http://:80/a.png") }, "invalid_image"},
	{"image opaque", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Images = strs("https:example.com") }, "invalid_image"},
	{"image javascript", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Images = strs("javascript:alert(1)") }, "invalid_image"},
	{"image blank", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Images = strs(" ") }, "invalid_image"},
	{"image number", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Images = list(num(1)) }, "invalid_image"},
	{"image 2049 characters", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Images = strs("https://example.com/" + n("a", 2049-len("https://example.com/")))
	}, "invalid_image"},
	// 16. attrs
	{"attrs blank key", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Attrs = obj(map[string]*structpb.Value{" ": num(1)}) }, "invalid_attrs"},
	{"attrs array", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Attrs = obj(map[string]*structpb.Value{"a": structpb.NewListValue(list())})
	}, "invalid_attrs"},
	{"attrs array in nested object", validate.RouteUpdate, func(r *apiv1.EventRequest) {
		r.Attrs = obj(map[string]*structpb.Value{"a": objValue(map[string]*structpb.Value{"b": structpb.NewListValue(list())})})
	}, "invalid_attrs"},
	{"attrs two levels deep", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Attrs = obj(map[string]*structpb.Value{"a": objValue(map[string]*structpb.Value{"b": objValue(nil)})})
	}, "invalid_attrs"},
	{"attrs blank nested key", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Attrs = obj(map[string]*structpb.Value{"a": objValue(map[string]*structpb.Value{"": num(1)})})
	}, "invalid_attrs"},
	{"attrs value kind unset", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Attrs = obj(map[string]*structpb.Value{"a": {}}) }, "invalid_attrs"},
	// 17. metadata
	{"metadata null", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Metadata = obj(map[string]*structpb.Value{"a": structpb.NewNullValue()})
	}, "invalid_metadata"},
	{"metadata object", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Metadata = obj(map[string]*structpb.Value{"a": objValue(nil)}) }, "invalid_metadata"},
	{"metadata array", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Metadata = obj(map[string]*structpb.Value{"a": structpb.NewListValue(list())})
	}, "invalid_metadata"},
	{"metadata blank key", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Metadata = obj(map[string]*structpb.Value{"  ": str("x")}) }, "invalid_metadata"},
	{"metadata key 65 characters", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Metadata = obj(map[string]*structpb.Value{n("k", 65): str("x")}) }, "invalid_metadata"},
	{"metadata value 513 characters", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Metadata = obj(map[string]*structpb.Value{"k": str(n("v", 513))}) }, "invalid_metadata"},

	// Order: with two faults the earlier check wins.
	{"order: channel_id before password", validate.RouteCreate, func(r *apiv1.EventRequest) { r.ChannelId = "x"; r.Password = "" }, "invalid_channel_id"},
	{"order: password before op_id", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Password = "short"; r.OpId = ptr("") }, "invalid_password"},
	{"order: op_id before thing_id", validate.RouteCreate, func(r *apiv1.EventRequest) { r.OpId = ptr("a b"); r.ThingId = ptr("") }, "invalid_op_id"},
	{"order: thing_id before event_id", validate.RouteCreate, func(r *apiv1.EventRequest) { r.ThingId = ptr("a b"); r.EventId = ptr("e") }, "invalid_thing_id"},
	{"order: event_id before title", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventId = ptr("e"); r.Title = "" }, "event_id_forbidden_on_create"},
	{"order: title before status", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Title = ""; r.Status = "" }, "title_required"},
	{"order: status before message", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.Status = ""; r.Message = "" }, "status_required"},
	{"order: message before severity", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.Message = n("m", 600); r.Severity = "x" }, "message_too_long"},
	{"order: severity before event_time", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.Severity = "x"; r.EventTime = nil }, "invalid_severity"},
	{"order: event_time before started_at", validate.RouteCreate, func(r *apiv1.EventRequest) { r.EventTime = str("x"); r.StartedAt = str("x") }, "invalid_event_time"},
	{"order: started_at before ended_at on close", validate.RouteClose, func(r *apiv1.EventRequest) { r.StartedAt = num(1); r.EndedAt = str("x") }, "started_at_forbidden"},
	{"order: invalid started_at before forbidden ended_at", validate.RouteCreate, func(r *apiv1.EventRequest) { r.StartedAt = str("x"); r.EndedAt = num(1) }, "invalid_started_at"},
	{"order: ended_at before tags", validate.RouteUpdate, func(r *apiv1.EventRequest) { r.EndedAt = num(1); r.Tags = list(num(1)) }, "ended_at_forbidden"},
	{"order: too many tags before a bad tag", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Tags = strs(strings.Split(n(" ,", 33), ",")...)
	}, "too_many_tags"},
	{"order: tags before images", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Tags = strs(""); r.Images = strs("") }, "invalid_tag"},
	{"order: images before attrs", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Images = strs("x")
		r.Attrs = obj(map[string]*structpb.Value{"": num(1)})
	}, "invalid_image"},
	{"order: attrs before metadata", validate.RouteCreate, func(r *apiv1.EventRequest) {
		r.Attrs = obj(map[string]*structpb.Value{"": num(1)})
		r.Metadata = obj(map[string]*structpb.Value{"": num(1)})
	}, "invalid_attrs"},
}

func TestEventErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range eventErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validEvent(tt.route)
			tt.edit(req)
			op, got := validate.Event(tt.route, req)
			if got == nil {
				t.Fatalf("Event(%s) = %+v, want error %s", tt.route, op, tt.wantCode)
			}
			if got.Code != tt.wantCode {
				t.Errorf("Event(%s) = %s (%s), want %s", tt.route, got.Code, got.Msg, tt.wantCode)
			}
			if op != nil {
				t.Errorf("Event(%s) returned an op with an error", tt.route)
			}
		})
	}
}

func TestEventUnknownRoute(t *testing.T) {
	t.Parallel()
	_, got := validate.Event("archive", validEvent(validate.RouteCreate))
	if got == nil || got.Code != "internal_error" {
		t.Errorf("Event(archive) = %v, want internal_error", got)
	}
}

func TestEventNilRequest(t *testing.T) {
	t.Parallel()
	_, got := validate.Event(validate.RouteCreate, nil)
	if got == nil || got.Code != "channel_id_required" {
		t.Errorf("Event(nil) = %v, want channel_id_required", got)
	}
}

// eventErrorMessages pins a few messages: they name the field and the limit.
func TestEventErrorMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		route   validate.Route
		edit    func(*apiv1.EventRequest)
		wantMsg string
	}{
		{"status limit", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Status = n("s", 25) }, "status must be at most 24 characters"},
		{"password limits", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Password = "x" }, "password must be 8 to 128 characters"},
		{"tag index", validate.RouteCreate, func(r *apiv1.EventRequest) { r.Tags = strs("a", "") }, "tags[1] must be a non-blank string of at most 64 characters"},
		{"attrs key", validate.RouteCreate, func(r *apiv1.EventRequest) {
			r.Attrs = obj(map[string]*structpb.Value{"z": structpb.NewListValue(list()), "b": structpb.NewListValue(list()), "ok": num(1)})
		}, `attrs["b"]: arrays are not allowed`},
		{"attrs nested key", validate.RouteCreate, func(r *apiv1.EventRequest) {
			r.Attrs = obj(map[string]*structpb.Value{"a": objValue(map[string]*structpb.Value{"b": objValue(nil)})})
		}, `attrs["a"]: nested key "b": objects may be nested one level only`},
		{"metadata key", validate.RouteCreate, func(r *apiv1.EventRequest) {
			r.Metadata = obj(map[string]*structpb.Value{"k": structpb.NewNullValue()})
		},
			`metadata["k"]: values must be strings, numbers or booleans`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validEvent(tt.route)
			tt.edit(req)
			_, got := validate.Event(tt.route, req)
			if got == nil || got.Msg != tt.wantMsg {
				t.Errorf("Event = %v, want message %q", got, tt.wantMsg)
			}
		})
	}
}

func TestEventNormalises(t *testing.T) {
	t.Parallel()
	attrs := obj(map[string]*structpb.Value{
		"a": structpb.NewNullValue(), " k ": num(1),
		"o": objValue(map[string]*structpb.Value{"x": structpb.NewNullValue(), "y": str("s"), "z": structpb.NewBoolValue(false)}),
	})
	metadata := obj(map[string]*structpb.Value{" key ": str("v"), "n": num(1.5), "b": structpb.NewBoolValue(true)})
	tests := []struct {
		name  string
		route validate.Route
		edit  func(*apiv1.EventRequest)
		check func(t *testing.T, op *validate.Op)
	}{
		{"canonical channel id from lower case with dashes", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.ChannelId = " 06j0-fzg1-y8xg-g14v-tq4y-3g10-mr " },
			func(t *testing.T, op *validate.Op) { eq(t, "ChannelID", op.ChannelID, validChannel) }},
		{"password kept as given", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Password = "  spaced pass  " },
			func(t *testing.T, op *validate.Op) { eq(t, "Password", op.Password, "  spaced pass  ") }},
		{"password of 8 multibyte characters", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Password = "pässwörd" },
			func(t *testing.T, op *validate.Op) { eq(t, "Password", op.Password, "pässwörd") }},
		{"seconds become milliseconds", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.EventTime = num(1713750000) },
			func(t *testing.T, op *validate.Op) {
				eq(t, "EventTime", op.Fields.GetEventTime(), int64(1713750000000))
			}},
		{"milliseconds kept", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.EventTime = num(1713750000123) },
			func(t *testing.T, op *validate.Op) {
				eq(t, "EventTime", op.Fields.GetEventTime(), int64(1713750000123))
			}},
		{"10^12 is milliseconds", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.EventTime = num(1e12) },
			func(t *testing.T, op *validate.Op) { eq(t, "EventTime", op.Fields.GetEventTime(), int64(1e12)) }},
		{"just below 10^12 is seconds", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.EventTime = num(1e12 - 1) },
			func(t *testing.T, op *validate.Op) { eq(t, "EventTime", op.Fields.GetEventTime(), int64(1e12-1)*1000) }},
		{"2^53-1 accepted", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.EventTime = num(1<<53 - 1) },
			func(t *testing.T, op *validate.Op) { eq(t, "EventTime", op.Fields.GetEventTime(), int64(1<<53-1)) }},
		{"string seconds accepted", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.EventTime = str("1713750000") },
			func(t *testing.T, op *validate.Op) {
				eq(t, "EventTime", op.Fields.GetEventTime(), int64(1713750000000))
			}},
		{"string trimmed, leading zeros", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.EventTime = str(" 01713750000123 ") },
			func(t *testing.T, op *validate.Op) {
				eq(t, "EventTime", op.Fields.GetEventTime(), int64(1713750000123))
			}},
		{"started_at on create", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.StartedAt = str("1713749000") },
			func(t *testing.T, op *validate.Op) {
				eq(t, "StartedAt", op.Fields.GetStartedAt(), int64(1713749000000))
			}},
		{"started_at absent stays unset", validate.RouteCreate,
			func(r *apiv1.EventRequest) {},
			func(t *testing.T, op *validate.Op) { eq(t, "StartedAt set", op.Fields.StartedAt != nil, false) }},
		{"null started_at on update is absent", validate.RouteUpdate,
			func(r *apiv1.EventRequest) { r.StartedAt = structpb.NewNullValue() },
			func(t *testing.T, op *validate.Op) { eq(t, "StartedAt set", op.Fields.StartedAt != nil, false) }},
		{"ended_at on close", validate.RouteClose,
			func(r *apiv1.EventRequest) { r.EndedAt = num(1713750001) },
			func(t *testing.T, op *validate.Op) { eq(t, "EndedAt", op.Fields.GetEndedAt(), int64(1713750001000)) }},
		{"tags trimmed and deduplicated", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Tags = strs(" b ", "a", "b", "a ", "c") },
			func(t *testing.T, op *validate.Op) { eqProto(t, "Tags", op.Fields.GetTags(), strs("b", "a", "c")) }},
		{"32 tags accepted", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Tags = strs(strings.Split(n("t,", 31)+"t", ",")...) },
			func(t *testing.T, op *validate.Op) { eq(t, "len(Tags)", len(op.Fields.GetTags().GetValues()), 1) }},
		{"empty tags stay present", validate.RouteUpdate,
			func(r *apiv1.EventRequest) { r.Tags = list() },
			func(t *testing.T, op *validate.Op) {
				eq(t, "Tags present", op.Fields.Tags != nil, true)
				eq(t, "len(Tags)", len(op.Fields.GetTags().GetValues()), 0)
			}},
		{"absent tags stay absent", validate.RouteUpdate,
			func(r *apiv1.EventRequest) {},
			func(t *testing.T, op *validate.Op) { eq(t, "Tags present", op.Fields.Tags != nil, false) }},
		{"images trimmed and deduplicated", validate.RouteCreate,
			func(r *apiv1.EventRequest) {
				r.Images = strs(" HTTPS://Example.com/a.png ", "https://Example.com/a.png", "http://x.test/b?c=d")
			},
			func(t *testing.T, op *validate.Op) {
				eqProto(t, "Images", op.Fields.GetImages(), strs("HTTPS://Example.com/a.png", "https://Example.com/a.png", "http://x.test/b?c=d"))
			}},
		{"severity lower-cased", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Severity = " HIGH " },
			func(t *testing.T, op *validate.Op) { eq(t, "Severity", op.Fields.GetSeverity(), "high") }},
		{"text trimmed", validate.RouteCreate,
			func(r *apiv1.EventRequest) {
				r.Title, r.Description, r.Status, r.Message = "  Deploy ", "\tdesc\n", " ok ", " done "
			},
			func(t *testing.T, op *validate.Op) {
				eq(t, "Title", op.Fields.GetTitle(), "Deploy")
				eq(t, "Description", op.Fields.GetDescription(), "desc")
				eq(t, "Status", op.Fields.GetStatus(), "ok")
				eq(t, "Message", op.Fields.GetMessage(), "done")
			}},
		{"24-character status accepted", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Status = n("é", 24) },
			func(t *testing.T, op *validate.Op) { eq(t, "Status", op.Fields.GetStatus(), n("é", 24)) }},
		{"blank title on update is absent", validate.RouteUpdate,
			func(r *apiv1.EventRequest) { r.Title = "  " },
			func(t *testing.T, op *validate.Op) { eq(t, "Title set", op.Fields.Title != nil, false) }},
		{"blank description is absent", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Description = "   " },
			func(t *testing.T, op *validate.Op) { eq(t, "Description set", op.Fields.Description != nil, false) }},
		{"ids kept", validate.RouteClose,
			func(r *apiv1.EventRequest) {
				r.OpId, r.ThingId, r.EventId = ptr("op:1_a-B"), ptr("host:7"), ptr("Evt_9")
			},
			func(t *testing.T, op *validate.Op) {
				eq(t, "OpID", op.OpID, "op:1_a-B")
				eq(t, "ThingId", op.Fields.GetThingId(), "host:7")
				eq(t, "EventID", op.EventID, "Evt_9")
				eq(t, "Route", op.Route, validate.RouteClose)
			}},
		{"no op_id, no thing_id", validate.RouteCreate,
			func(r *apiv1.EventRequest) {},
			func(t *testing.T, op *validate.Op) {
				eq(t, "OpID", op.OpID, "")
				eq(t, "EventID", op.EventID, "")
				eq(t, "ThingId set", op.Fields.ThingId != nil, false)
			}},
		{"attrs and metadata kept as given", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Attrs, r.Metadata = attrs, metadata },
			func(t *testing.T, op *validate.Op) {
				eqProto(t, "Attrs", op.Fields.GetAttrs(), attrs)
				eqProto(t, "Metadata", op.Fields.GetMetadata(), metadata)
			}},
		{"empty attrs object accepted", validate.RouteUpdate,
			func(r *apiv1.EventRequest) { r.Attrs = obj(nil) },
			func(t *testing.T, op *validate.Op) { eq(t, "Attrs present", op.Fields.Attrs != nil, true) }},
		{"empty ciphertext is absent", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Ciphertext = "" },
			func(t *testing.T, op *validate.Op) { eq(t, "Ciphertext set", op.Fields.Ciphertext != nil, false) }},
		{"ciphertext passed through", validate.RouteCreate,
			func(r *apiv1.EventRequest) { r.Ciphertext = " b64== " },
			func(t *testing.T, op *validate.Op) { eq(t, "Ciphertext", op.Fields.GetCiphertext(), " b64== ") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validEvent(tt.route)
			tt.edit(req)
			op, err := validate.Event(tt.route, req)
			if err != nil {
				t.Fatalf("Event(%s) = %v, want success", tt.route, err)
			}
			tt.check(t, op)
		})
	}
}

func TestEventFullNormalisedFields(t *testing.T) {
	t.Parallel()
	req := validEvent(validate.RouteCreate)
	req.Title = " Deploy "
	req.Tags = strs("x", " x")
	op, err := validate.Event(validate.RouteCreate, req)
	if err != nil {
		t.Fatalf("Event = %v", err)
	}
	want := &apiv1.EventFields{
		Title:     ptr("Deploy"),
		Status:    "running",
		Message:   "step 1 of 3",
		Severity:  "normal",
		EventTime: 1713750000000,
		Tags:      strs("x"),
	}
	eqProto(t, "Fields", op.Fields, want)
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func eqProto(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// codesReached lists the codes the error tables of this package reach.
func codesReached() map[string]bool {
	reached := map[string]bool{}
	for _, c := range eventErrorCases {
		reached[c.wantCode] = true
	}
	for _, c := range createChannelErrorCases {
		reached[c.wantCode] = true
	}
	for _, c := range getEventErrorCases {
		reached[c.wantCode] = true
	}
	for _, c := range listEventsErrorCases {
		reached[c.wantCode] = true
	}
	return reached
}

// TestEveryFieldCodeIsTested checks that the tables reach every field-rule code this package can
// return, and that each of them is in the apierr table.
func TestEveryFieldCodeIsTested(t *testing.T) {
	t.Parallel()
	codes := []string{
		"channel_id_required", "invalid_channel_id", "password_required", "invalid_password",
		"invalid_op_id", "invalid_thing_id", "event_id_forbidden_on_create", "event_id_required",
		"invalid_event_id", "title_required", "status_required", "status_too_long",
		"message_required", "message_too_long", "severity_required", "invalid_severity",
		"event_time_required", "invalid_event_time", "invalid_started_at", "started_at_forbidden",
		"invalid_ended_at", "ended_at_forbidden", "too_many_tags", "invalid_tag", "too_many_images",
		"invalid_image", "invalid_attrs", "invalid_metadata", "channel_name_required",
		"invalid_channel_name", "invalid_event_state", "invalid_limit", "invalid_cursor",
	}
	reached := codesReached()
	for _, c := range codes {
		if _, ok := apierr.Codes[c]; !ok {
			t.Errorf("code %q is not in apierr.Codes", c)
		}
		if !reached[c] {
			t.Errorf("no test case reaches %q", c)
		}
	}
}
