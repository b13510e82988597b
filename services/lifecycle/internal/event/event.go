// Package event holds the lifecycle rules of an event (DESIGN.md §3) as a pure fold: no clock,
// no I/O, no NATS. Decide judges one command against the current state and returns the state
// after it, or a *RuleError. The caller supplies "now" and persists the result.
//
// State is a value: Decide never changes the State it is given (maps and slices are copied
// before they are changed), so a State read from the store can be shared freely.
package event

import (
	"bytes"
	"encoding/json"
)

// Route is the kind of op.
type Route string

// Routes.
const (
	Create Route = "create"
	Update Route = "update"
	Close  Route = "close"
)

// Fields is one validated op. Pointer and nil-able fields are absent when nil.
type Fields struct {
	ThingID     *string
	Title       *string
	Description *string
	Status      string
	Message     string
	Severity    string
	// EventTime is when the step happened, Unix ms.
	EventTime int64
	StartedAt *int64
	EndedAt   *int64
	// Tags and Images replace the event's when non-nil (an empty slice clears them).
	Tags   *[]string
	Images *[]string
	// Attrs is a JSON merge patch (RFC 7386) of JSON values: nil deletes a key, a
	// map[string]any merges one level down.
	Attrs map[string]any
}

// Command is one op on one event.
type Command struct {
	Route     Route
	ChannelID string
	EventID   string
	Fields    Fields
}

// State is an event after its last applied op. Times are Unix ms.
type State struct {
	EventID     string
	ChannelID   string
	ThingID     string // "" when the event has none
	Title       string
	Description string // "" when none
	Status      string
	Message     string
	Severity    string
	Tags        []string
	Images      []string
	Attrs       map[string]any
	StartedAt   int64
	EndedAt     int64 // 0 while ongoing
	EventTime   int64
	Closed      bool
	Version     uint32
	CreatedAt   int64
	UpdatedAt   int64
}

// Decision is the result of an accepted command.
type Decision struct {
	// Applied is false for a late update: it is recorded but changes nothing and is not pushed.
	Applied bool
	// Version is the state's version after the command (for a late update, the version it
	// was judged against).
	Version uint32
	// State is the state after the command.
	State State
}

// Decide applies the lifecycle rules to command c given the current state s (nil when the
// event has no history) at time now (Unix ms, used for created_at/updated_at only).
func Decide(s *State, c Command, now int64) (Decision, error) {
	switch c.Route {
	case Create:
		return create(s, c, now)
	case Update, Close:
		return change(s, c, now)
	default:
		return Decision{}, &RuleError{Code: "internal_error", Status: 500, Msg: "unknown route " + string(c.Route)}
	}
}

func create(s *State, c Command, now int64) (Decision, error) {
	if s != nil {
		return Decision{}, ErrEventExists
	}
	f := c.Fields
	n := State{
		EventID:   c.EventID,
		ChannelID: c.ChannelID,
		Status:    f.Status,
		Message:   f.Message,
		Severity:  f.Severity,
		Attrs:     mergePatch(nil, f.Attrs),
		StartedAt: f.EventTime,
		EventTime: f.EventTime,
		Version:   1,
		CreatedAt: now,
		UpdatedAt: now,
	}
	if f.ThingID != nil {
		n.ThingID = *f.ThingID
	}
	if f.StartedAt != nil {
		n.StartedAt = *f.StartedAt
	}
	replaceText(&n, f)
	return Decision{Applied: true, Version: 1, State: n}, nil
}

func change(s *State, c Command, now int64) (Decision, error) {
	if s == nil {
		return Decision{}, ErrEventNotFound
	}
	if s.Closed {
		return Decision{}, ErrEventClosed
	}
	f := c.Fields
	if f.ThingID != nil && *f.ThingID != s.ThingID {
		return Decision{}, ErrThingIDMismatch
	}
	n := *s
	if c.Route == Close {
		n.EndedAt = f.EventTime
		if f.EndedAt != nil {
			n.EndedAt = *f.EndedAt
		}
		if n.EndedAt < s.StartedAt {
			return Decision{}, ErrInvalidEndedAt
		}
		n.Closed = true
		// A close is never late, but the event's time never moves backwards.
		n.EventTime = max(s.EventTime, f.EventTime)
	} else {
		if f.EventTime < s.EventTime {
			return Decision{Applied: false, Version: s.Version, State: *s}, nil
		}
		n.EventTime = f.EventTime
	}
	n.Status, n.Message, n.Severity = f.Status, f.Message, f.Severity
	replaceText(&n, f)
	n.Attrs = mergePatch(s.Attrs, f.Attrs)
	if f.Attrs != nil && attrsTooLarge(n.Attrs) {
		return Decision{}, ErrAttrsTooLarge
	}
	n.Version = s.Version + 1
	n.UpdatedAt = now
	return Decision{Applied: true, Version: n.Version, State: n}, nil
}

// MaxAttrsBytes bounds an event's folded attrs, as JSON. A merge patch can add keys on every
// update, and every domain event carries the whole state (and every push the folded attrs), so
// without a bound an event would outgrow the broker's message size and its next op could never
// be stored. A request body is at most 32 KiB, so one op cannot reach it alone.
const MaxAttrsBytes = 64 << 10

// attrsTooLarge reports whether attrs encode to more than MaxAttrsBytes of JSON (without HTML
// escaping, as pushes carry them).
func attrsTooLarge(attrs map[string]any) bool {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	return enc.Encode(attrs) != nil || b.Len()-1 > MaxAttrsBytes // Encode adds a newline
}

// replaceText applies the fields that replace when given.
func replaceText(n *State, f Fields) {
	if f.Title != nil {
		n.Title = *f.Title
	}
	if f.Description != nil {
		n.Description = *f.Description
	}
	if f.Tags != nil {
		n.Tags = append([]string(nil), *f.Tags...)
	}
	if f.Images != nil {
		n.Images = append([]string(nil), *f.Images...)
	}
}

// mergePatch returns base with patch applied (RFC 7386, objects at most one level deep). base
// is not modified.
func mergePatch(base, patch map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(patch))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			cur, _ := out[k].(map[string]any)
			merged := make(map[string]any, len(cur)+len(pv))
			for ik, iv := range cur {
				merged[ik] = iv
			}
			for ik, iv := range pv {
				if iv == nil {
					delete(merged, ik)
				} else {
					merged[ik] = iv
				}
			}
			out[k] = merged
		default:
			out[k] = v
		}
	}
	return out
}
