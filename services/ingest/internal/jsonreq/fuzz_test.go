package jsonreq_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/jsonreq"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

// FuzzDecodeEventRequest runs the whole request front end on arbitrary bodies: Decode into an
// EventRequest, then validate.Event for every route. Nothing may panic, every error must carry a
// code from apierr.Codes (internal_error is never expected), and an accepted op must be
// self-consistent (canonical channel id, ms times, fingerprint computable, Fields marshalable).
func FuzzDecodeEventRequest(f *testing.F) {
	seeds := []string{
		// Realistic.
		`{"channel_id":"06J0FZG1Y8XGG14VTQ4Y3G10MR","password":"p4ssw0rd!","title":"Deploy api","status":"running","message":"step 1 of 3","severity":"normal","event_time":1713750000}`,
		`{"channel_id":"06j0-fzg1-y8xg-g14v-tq4y-3g10-mr","password":"p4ssw0rd!","op_id":"op-20260422-001","event_id":"evt_1","status":"done","message":"ok","severity":"LOW","event_time":"1713750000123","ended_at":1713750001,"tags":[" a ","b","a"],"images":["https://example.com/x.png"]}`,
		`{"channel_id":"06J0FZG1Y8XGG14VTQ4Y3G10MR","password":"p4ssw0rd!","thing_id":"host:1","title":"t","status":"s","message":"m","severity":"high","event_time":1713750000,"started_at":1713749000,"attrs":{"a":1,"b":{"c":null}},"metadata":{"k":"v","n":1,"t":true},"ciphertext":"Zm9v"}`,
		`{"channel_id":"06J0FZG1Y8XGG14VTQ4Y3G10MR","password":"p4ssw0rd!","event_id":"e","status":"s","message":"m","severity":"critical","event_time":1713750000,"tags":[],"description":"  "}`,
		// Hostile.
		``,
		`{`,
		`{}{}`,
		`{"channelId":"x"}`,
		`{"event_time":1e400}`,
		`{"event_time":-1,"started_at":0.5,"ended_at":"9007199254740993"}`,
		`{"tags":[1,null,{"a":[]}],"images":["javascript:alert(1)","http://"]}`,
		`{"attrs":{"":[],"x":{"y":{"z":1}}},"metadata":{"a":null}}`,
		`{"op_id":"","thing_id":"` + strings.Repeat("x", 65) + `","event_id":null}`,
		`{"attrs":{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}`,
		`{"title":"\ud800","status":"\u0000","message":"\"\\\/\b\f\n\r\t"}`,
		`{"channel_id":"06J0FZG1Y8XGG14VTQ4Y3G10MR","password":"        ","title":1}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	routes := []validate.Route{validate.RouteCreate, validate.RouteUpdate, validate.RouteClose}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := &apiv1.EventRequest{}
		if err := jsonreq.Decode(body, req); err != nil {
			checkCode(t, err)
			return
		}
		for _, route := range routes {
			op, err := validate.Event(route, req)
			if err != nil {
				checkCode(t, err)
				continue
			}
			if canon, cerr := validate.ChannelID(op.ChannelID); cerr != nil || canon != op.ChannelID {
				t.Fatalf("%s: channel id %q is not canonical", route, op.ChannelID)
			}
			if op.Fields.GetEventTime() < 1000 {
				t.Fatalf("%s: event_time %d is not in milliseconds", route, op.Fields.GetEventTime())
			}
			if fp := validate.Fingerprint(route, op.ChannelID, op.EventID, op.Fields); len(fp) != 64 {
				t.Fatalf("%s: fingerprint %q", route, fp)
			}
			if _, merr := proto.Marshal(op.Fields); merr != nil {
				t.Fatalf("%s: normalised fields do not marshal: %v", route, merr)
			}
		}
	})
}

func checkCode(t *testing.T, err *apierr.Error) {
	t.Helper()
	if _, ok := apierr.Codes[err.Code]; !ok || err.Code == "internal_error" {
		t.Fatalf("unexpected error code %q (%s)", err.Code, err.Msg)
	}
}

// BenchmarkDecodeAndValidate measures the request front end for a typical create body.
func BenchmarkDecodeAndValidate(b *testing.B) {
	body := []byte(`{"channel_id":"06J0FZG1Y8XGG14VTQ4Y3G10MR","password":"p4ssw0rd!","op_id":"op-20260422-001",
		"thing_id":"host:1","title":"Deploy api","description":"rolling out v2","status":"running",
		"message":"step 1 of 3","severity":"normal","event_time":1713750000,"tags":["deploy","api"],
		"images":["https://example.com/a.png"],"attrs":{"progress":0.3,"region":"eu","o":{"a":1}},
		"metadata":{"trace":"abc"}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := &apiv1.EventRequest{}
		if err := jsonreq.Decode(body, req); err != nil {
			b.Fatal(err)
		}
		op, err := validate.Event(validate.RouteCreate, req)
		if err != nil {
			b.Fatal(err)
		}
		_ = validate.Fingerprint(op.Route, op.ChannelID, op.EventID, op.Fields)
	}
}

// BenchmarkDecodeLargeBody decodes a body near the 32 KiB limit.
func BenchmarkDecodeLargeBody(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"attrs":{`)
	for i := 0; sb.Len() < 32000; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"key%d":{"a":"value %d","b":%d.5,"c":null}`, i, i, i)
	}
	sb.WriteString(`}}`)
	body := []byte(sb.String())
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := jsonreq.Decode(body, &apiv1.EventRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}
