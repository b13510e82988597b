package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
)

func TestAppendMessage(t *testing.T) {
	t.Parallel()
	attrs, err := structpb.NewStruct(map[string]any{"z": 1.5, "a": nil, "m": map[string]any{"y": true, "x": "s"}})
	if err != nil {
		t.Fatal(err)
	}
	ended := int64(1713750600000)
	tests := []struct {
		name string
		msg  proto.Message
		want string
	}{
		{
			name: "unset optional fields are null, 64-bit integers are numbers, map keys sorted",
			msg: &apiv1.Event{EventId: "e", ChannelId: "C", Title: "t<&>\"\n", Tags: []string{"a"}, Attrs: attrs,
				StartedAt: 1713750000000, EndedAt: &ended, EventTime: 9007199254740991, EventState: "CLOSED", Version: 3},
			want: `{"event_id":"e","channel_id":"C","thing_id":null,"title":"t\u003c\u0026\u003e\"\n","description":null,` +
				`"status":"","message":"","severity":"","tags":["a"],"images":[],"attrs":{"a":null,"m":{"x":"s","y":true},"z":1.5},` +
				`"started_at":1713750000000,"ended_at":1713750600000,"event_time":9007199254740991,"event_state":"CLOSED",` +
				`"version":3,"created_at":0,"updated_at":0}`,
		},
		{
			name: "unset message fields are null",
			msg:  &apiv1.EventFields{Status: "s", Tags: &structpb.ListValue{}},
			want: `{"thing_id":null,"title":null,"description":null,"status":"s","message":"","severity":"","event_time":0,` +
				`"started_at":null,"ended_at":null,"tags":[],"images":null,"attrs":null,"metadata":null,"ciphertext":null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := string(appendMessage(nil, tt.msg.ProtoReflect()))
			if got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatal("not valid JSON")
			}
		})
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\", "ctl\x00\x1f", "bad\xff\xfeutf8", "\u2028\u2029", "部署 ✓"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", s, b, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); utf8.ValidString(s) && back != want {
			t.Fatalf("round trip of %q gave %q", s, back)
		}
	})
}
