package httpapi

import (
	"encoding/json"
	"testing"
)

func TestRenameKeys(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{`{"deviceKey":"k","activityKey":"event:e1","channelID":"C","token":"ab","platform":"ios","schemaVersion":1}`,
			`{"device_key":"k","activity_key":"event:e1","channel_id":"C","token":"ab","platform":"ios","schema_version":1}`},
		{` { "device_key" : "k" , "attrs" : {"deviceKey": 1} } `, `{"device_key":"k","attrs":{"deviceKey": 1}}`},
		{`{"channelID":"a","channel_id":"b"}`, `{"channel_id":"a","channel_id":"b"}`}, // strict decoding refuses the repeat
		{`[1,2]`, `[1,2]`},
		{`{"a":1} {"b":2}`, `{"a":1} {"b":2}`},
		{`{"a":`, `{"a":`},
		{``, ``},
	} {
		if got := string(renameKeys([]byte(tt.in))); got != tt.want {
			t.Errorf("renameKeys(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzRenameKeys: any body comes back unchanged or as valid JSON, never a panic.
func FuzzRenameKeys(f *testing.F) {
	f.Add([]byte(`{"deviceKey":"k","activityKey":"event:e1"}`))
	f.Add([]byte(`{"a":[{"b":null}],"c":"\u00e9"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		out := renameKeys(body)
		if string(out) != string(body) && !json.Valid(out) {
			t.Fatalf("renameKeys(%q) = %q: neither the input nor JSON", body, out)
		}
	})
}
