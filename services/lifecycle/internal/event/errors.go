package event

import "fmt"

// RuleError is a command the lifecycle rules reject. It is permanent: redelivering the command
// gives the same answer, so it becomes the op's outcome rather than a retry.
type RuleError struct {
	// Code is the API error_code.
	Code string
	// Status is the HTTP status of the outcome.
	Status int
	Msg    string
}

func (e *RuleError) Error() string { return e.Code + ": " + e.Msg }

// The rules' rejections, in the order Decide checks them.
var (
	// ErrEventExists: create of an event_id that already has history. Reachable only when an
	// op_id is replayed after the idempotency window (event ids are derived from op ids).
	ErrEventExists = &RuleError{Code: "event_exists", Status: 409, Msg: "event already exists; use /event/update or /event/close"}
	// ErrEventNotFound: update or close of an event with no history.
	ErrEventNotFound = &RuleError{Code: "event_not_found", Status: 404, Msg: "event not found; use /event/create first"}
	// ErrEventClosed: update or close of a closed event.
	ErrEventClosed = &RuleError{Code: "event_closed", Status: 409, Msg: "event is closed"}
	// ErrThingIDMismatch: thing_id is fixed at create; a different one was given.
	ErrThingIDMismatch = &RuleError{Code: "thing_id_mismatch", Status: 409, Msg: "thing_id differs from the event's thing_id"}
	// ErrInvalidEndedAt: ended_at (or event_time, its default) is before started_at.
	ErrInvalidEndedAt = &RuleError{Code: "invalid_ended_at", Status: 400, Msg: "ended_at is before the event's started_at"}
	// ErrAttrsTooLarge: the folded attrs would outgrow MaxAttrsBytes.
	ErrAttrsTooLarge = &RuleError{Code: "attrs_too_large", Status: 400,
		Msg: fmt.Sprintf("the event's attrs would exceed %d bytes of JSON after this patch; delete keys with null first", MaxAttrsBytes)}
)
