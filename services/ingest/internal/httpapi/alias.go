package httpapi

import (
	"bytes"
	"encoding/json"
	"strings"
)

// activityAlias is the path prefix of PushGo's Apple client's Live Activity routes
// (/v1/activity/register, /v1/activity/unregister): the same routes without it, whose bodies
// may use the client's camelCase names.
const activityAlias = "/v1/activity/"

// clientNames maps PushGo's Apple client's field names to ours.
var clientNames = map[string]string{
	"deviceKey":        "device_key",
	"channelID":        "channel_id",
	"channelId":        "channel_id",
	"eventID":          "event_id",
	"eventId":          "event_id",
	"activityKey":      "activity_key",
	"activityToken":    "activity_token",
	"pushToStartToken": "push_to_start_token",
	"schemaVersion":    "schema_version",
}

// renameKeys rewrites the top-level keys of a JSON object by clientNames, keeping their order,
// their values as written and any repeated key (which strict decoding then refuses). Anything
// that is not one well-formed object comes back unchanged, for the strict decoder to name.
func renameKeys(body []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return body
	}
	var out bytes.Buffer
	out.WriteByte('{')
	for first := true; dec.More(); first = false {
		t, err := dec.Token()
		key, ok := t.(string)
		if err != nil || !ok {
			return body
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return body
		}
		if name, ok := clientNames[key]; ok {
			key = name
		}
		if !first {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(key) // a string always encodes
		out.Write(k)
		out.WriteByte(':')
		out.Write(v)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') || dec.More() {
		return body
	}
	if _, err := dec.Token(); err == nil { // trailing data after the object
		return body
	}
	out.WriteByte('}')
	return out.Bytes()
}

// unalias turns a request on PushGo's alias into ours: the path without /v1, the body with our
// names.
func unalias(path string, body []byte) (string, []byte) {
	if !strings.HasPrefix(path, activityAlias) {
		return path, body
	}
	return strings.TrimPrefix(path, "/v1"), renameKeys(body)
}
