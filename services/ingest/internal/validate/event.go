// Package validate holds the field rules of the public API (DESIGN.md §6.3–6.5). Each function
// checks one decoded request in the documented order, returns the first violation as an
// *apierr.Error with its stable code, and normalises what it accepts (canonical channel id,
// trimmed text, times in Unix milliseconds, deduplicated lists).
//
// Everything here is a pure function: no I/O, no clock, safe for concurrent use. Lengths are
// counted in Unicode code points.
//
// The functions return a concrete *apierr.Error; a nil result means success. Do not store the
// result in an error variable before checking it against nil (a nil *apierr.Error in an error
// interface is not a nil error).
package validate

import (
	"strings"
	"unicode/utf8"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Route is an event write route.
type Route string

// The event write routes (/event/create, /event/update, /event/close).
const (
	RouteCreate Route = "create"
	RouteUpdate Route = "update"
	RouteClose  Route = "close"
)

// Text limits of the event rules (DESIGN.md §6.3).
const (
	maxStatusLen  = 24
	maxMessageLen = 512
)

// Op is a validated, normalised event op: what the ingest handler needs to authenticate the
// channel, run the idempotency check and build the command.
type Op struct {
	Route Route
	// ChannelID is the canonical 26-symbol upper-case form.
	ChannelID string
	// Password is exactly as the client sent it (checked for length only).
	Password string
	// OpID is "" when the client gave none; the caller then generates one.
	OpID string
	// EventID is set on update and close only ("" on create: the caller assigns it).
	EventID string
	// Fields is the op as normalised: text trimmed (blank optional text unset), severity lower
	// case, times in Unix milliseconds, tags and images trimmed and deduplicated (nil when
	// absent, empty when the client sent []). Attrs and Metadata are the request's own Structs
	// (shared, not copied). StartedAt stays unset when absent: defaulting it to EventTime is the
	// fold's job.
	Fields *apiv1.EventFields
}

// Event validates and normalises an /event/create, /event/update or /event/close request. The
// checks run in the order of DESIGN.md §6.3 and the first failure is returned:
// channel_id, password, op_id, thing_id, event_id, title, description, status, message,
// severity, event_time, started_at, ended_at, tags, images, attrs, metadata, ciphertext.
//
// A google.protobuf.Value holding NullValue (possible over gRPC) counts as absent, like JSON null.
// An unknown route is a programming error and yields internal_error.
func Event(route Route, req *apiv1.EventRequest) (*Op, *apierr.Error) {
	switch route {
	case RouteCreate, RouteUpdate, RouteClose:
	default:
		return nil, apierr.Newf("internal_error", "validate.Event: unknown route %q", route)
	}
	if req == nil {
		req = &apiv1.EventRequest{}
	}
	channelID, err := ChannelID(req.GetChannelId())
	if err != nil {
		return nil, err
	}
	if err := Password(req.GetPassword()); err != nil {
		return nil, err
	}
	op := &Op{
		Route:     route,
		ChannelID: channelID,
		Password:  req.GetPassword(),
		Fields:    &apiv1.EventFields{},
	}
	if err := op.checkIDs(req); err != nil { // op_id, thing_id, event_id
		return nil, err
	}
	if err := op.checkText(req); err != nil { // title, description, status, message, severity
		return nil, err
	}
	if err := op.checkTimes(req); err != nil { // event_time, started_at, ended_at
		return nil, err
	}
	if err := op.checkLists(req); err != nil { // tags, images
		return nil, err
	}
	if err := op.checkObjects(req); err != nil { // attrs, metadata, ciphertext
		return nil, err
	}
	return op, nil
}

// checkIDs checks op_id, thing_id and event_id.
func (op *Op) checkIDs(req *apiv1.EventRequest) *apierr.Error {
	if req.OpId != nil {
		if !isToken(*req.OpId, maxOpIDLen) {
			return apierr.New("invalid_op_id", tokenRule("op_id", maxOpIDLen))
		}
		op.OpID = *req.OpId
	}
	if req.ThingId != nil {
		if !isToken(*req.ThingId, maxEntityIDLen) {
			return apierr.New("invalid_thing_id", tokenRule("thing_id", maxEntityIDLen))
		}
		thingID := *req.ThingId
		op.Fields.ThingId = &thingID
	}
	if op.Route == RouteCreate {
		if req.EventId != nil {
			return apierr.New("event_id_forbidden_on_create",
				"event_id must not be set on /event/create: the gateway assigns it")
		}
		return nil
	}
	if err := checkEventID(req.GetEventId()); err != nil {
		return err
	}
	op.EventID = req.GetEventId()
	return nil
}

// checkText checks and trims title, description, status, message and severity.
func (op *Op) checkText(req *apiv1.EventRequest) *apierr.Error {
	f := op.Fields
	if title := strings.TrimSpace(req.GetTitle()); title != "" {
		f.Title = &title
	} else if op.Route == RouteCreate {
		return apierr.New("title_required", "title is required on /event/create")
	}
	if description := strings.TrimSpace(req.GetDescription()); description != "" {
		f.Description = &description
	}

	f.Status = strings.TrimSpace(req.GetStatus())
	if f.Status == "" {
		return apierr.New("status_required", "status is required")
	}
	if utf8.RuneCountInString(f.Status) > maxStatusLen {
		return apierr.Newf("status_too_long", "status must be at most %d characters", maxStatusLen)
	}

	f.Message = strings.TrimSpace(req.GetMessage())
	if f.Message == "" {
		return apierr.New("message_required", "message is required")
	}
	if utf8.RuneCountInString(f.Message) > maxMessageLen {
		return apierr.Newf("message_too_long", "message must be at most %d characters", maxMessageLen)
	}

	f.Severity = strings.ToLower(strings.TrimSpace(req.GetSeverity()))
	switch f.Severity {
	case "":
		return apierr.New("severity_required", "severity is required")
	case "critical", "high", "normal", "low":
		return nil
	default:
		return apierr.New("invalid_severity", "severity must be one of critical, high, normal, low")
	}
}
