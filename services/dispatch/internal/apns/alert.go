package apns

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Alert is what an alert push shows and carries.
type Alert struct {
	Title string
	Body  string
	// ThreadID groups the notifications of one event on the device.
	ThreadID string
	// Severity (critical, high, normal, low) picks the interruption level and sound, as PushGo's
	// Apple client expects: critical and high break through Focus (time-sensitive), low is
	// passive and silent.
	Severity string
	// Data is the data map (package push), sent as custom keys beside "aps"; a key "aps" in it
	// is not sent.
	Data map[string]string
	// Wake lists the keys of Data a shortened alert keeps when the whole would exceed
	// MaxPayload: the ids an app needs to pull the full push from its inbox.
	Wake []string
}

// previewRunes bounds the body of a shortened alert.
const previewRunes = 180

// AlertPayload returns the payload of a, or, when that exceeds MaxPayload, of a short alert:
// the title and a preview of the body, the Wake keys of the data map, and
// "provider_mode": "wakeup", so that the app pulls the full push from its inbox (PushGo's
// wakeup variant). ok is false only when even that does not fit (a title of kilobytes).
func AlertPayload(a Alert) (payload []byte, ok bool) {
	if b, err := encodeAlert(a.Title, a.Body, a.ThreadID, a.Severity, a.Data, true); err == nil && len(b) <= MaxPayload {
		return b, true
	}
	short := make(map[string]string, len(a.Wake)+1)
	for _, k := range a.Wake {
		if v, ok := a.Data[k]; ok {
			short[k] = v
		}
	}
	short["provider_mode"] = "wakeup"
	b, err := encodeAlert(truncate(a.Title, previewRunes), preview(a.Body), a.ThreadID, "", short, false)
	if err != nil || len(b) > MaxPayload {
		return nil, false
	}
	return b, true
}

func encodeAlert(title, body, thread, severity string, data map[string]string, sound bool) ([]byte, error) {
	aps := map[string]any{
		"alert":           map[string]string{"title": title, "body": body},
		"mutable-content": 1,
		"thread-id":       thread,
	}
	if sound {
		switch severity {
		case "critical", "high":
			aps["interruption-level"], aps["sound"] = "time-sensitive", "level-up.caf"
		case "low":
			aps["interruption-level"] = "passive"
		default:
			aps["interruption-level"], aps["sound"] = "active", "bubble-pop.caf"
		}
	}
	m := make(map[string]any, len(data)+1)
	for k, v := range data {
		m[k] = v
	}
	m["aps"] = aps
	return json.Marshal(m)
}

// preview is body on one line: lines trimmed, blank ones dropped, at most previewRunes runes.
func preview(body string) string {
	var lines []string
	for l := range strings.Lines(body) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return truncate(strings.Join(lines, " "), previewRunes)
}

// truncate cuts s to n runes, ending in "…" when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
