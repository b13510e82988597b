package validate

import (
	"strings"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Paging limits of /event/list (DESIGN.md §6.4).
const (
	defaultListLimit = 50
	maxListLimit     = 500
	maxCursorLen     = 512
)

// Event states accepted by /event/list.
const (
	StateOngoing = "ONGOING"
	StateClosed  = "CLOSED"
)

// GetEvent validates an /event/get or /event/history request: channel_id, password, event_id.
// It returns the canonical channel id, the password as given and the event id.
//
// Errors: channel_id_required, invalid_channel_id, password_required, invalid_password,
// event_id_required, invalid_event_id.
func GetEvent(req *apiv1.GetEventRequest) (channelID, password, eventID string, err *apierr.Error) {
	channelID, err = ChannelID(req.GetChannelId())
	if err != nil {
		return "", "", "", err
	}
	if err := Password(req.GetPassword()); err != nil {
		return "", "", "", err
	}
	if err := checkEventID(req.GetEventId()); err != nil {
		return "", "", "", err
	}
	return channelID, req.GetPassword(), req.GetEventId(), nil
}

// ListQuery is a validated /event/list request.
type ListQuery struct {
	// ChannelID is canonical; Password is as given.
	ChannelID, Password string
	// State is "" (both), StateOngoing or StateClosed.
	State string
	// Limit is the page size, 1..500 (50 when the client gave none).
	Limit int
	// Cursor is the client's opaque cursor, syntactically checked only ("" = first page); the
	// reader decodes it.
	Cursor string
}

// ListEvents validates an /event/list request: channel_id, password, event_state (ONGOING or
// CLOSED in any case, "" for both; surrounding space ignored), limit, cursor (at most 512
// characters of the base64url alphabet, no padding).
//
// Errors: channel_id_required, invalid_channel_id, password_required, invalid_password,
// invalid_event_state, invalid_limit, invalid_cursor.
func ListEvents(req *apiv1.ListEventsRequest) (ListQuery, *apierr.Error) {
	if req == nil {
		req = &apiv1.ListEventsRequest{}
	}
	channelID, err := ChannelID(req.GetChannelId())
	if err != nil {
		return ListQuery{}, err
	}
	if err := Password(req.GetPassword()); err != nil {
		return ListQuery{}, err
	}
	q := ListQuery{ChannelID: channelID, Password: req.GetPassword(), Limit: defaultListLimit}

	switch state := strings.TrimSpace(req.GetEventState()); {
	case state == "":
	case strings.EqualFold(state, StateOngoing):
		q.State = StateOngoing
	case strings.EqualFold(state, StateClosed):
		q.State = StateClosed
	default:
		return ListQuery{}, apierr.New("invalid_event_state", "event_state must be ONGOING or CLOSED")
	}

	if req.Limit != nil {
		if l := *req.Limit; l < 1 || l > maxListLimit {
			return ListQuery{}, apierr.Newf("invalid_limit", "limit must be between 1 and %d", maxListLimit)
		}
		q.Limit = int(*req.Limit)
	}

	q.Cursor = req.GetCursor()
	if !isCursor(q.Cursor) {
		return ListQuery{}, apierr.Newf("invalid_cursor",
			"cursor must be a next_cursor from a previous page (at most %d characters of A-Z, a-z, 0-9, '-', '_')", maxCursorLen)
	}
	return q, nil
}

// isCursor reports whether s is at most maxCursorLen characters of the base64url alphabet.
func isCursor(s string) bool {
	if len(s) > maxCursorLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
