package validate

import (
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

const (
	// maxTimeValue is the largest accepted time value before unit normalisation: 2^53−1, the
	// largest integer a JSON number carries exactly. A larger number literal reaches us rounded
	// to a double ≥ 2^53 (9007199254740993 becomes …992), so anything above it is refused
	// rather than stored as another value than the one sent (DESIGN.md §8.4).
	maxTimeValue = 1<<53 - 1
	// msThreshold: values from 10^12 up are Unix milliseconds (10^12 s is year 33658), smaller
	// values are Unix seconds.
	msThreshold = 1_000_000_000_000
)

// timeRule is the wording of the number rule shared by event_time, started_at and ended_at.
const timeRule = "must be a positive integer or a string of digits (Unix seconds, or milliseconds from 10^12), at most 2^53-1"

// checkTimes checks event_time, started_at and ended_at and stores them in milliseconds.
func (op *Op) checkTimes(req *apiv1.EventRequest) *apierr.Error {
	f := op.Fields
	ms, present, ok := timeValue(req.GetEventTime())
	switch {
	case !present:
		return apierr.New("event_time_required", "event_time is required")
	case !ok:
		return apierr.New("invalid_event_time", "event_time "+timeRule)
	}
	f.EventTime = ms

	if ms, present, ok := timeValue(req.GetStartedAt()); present {
		if op.Route != RouteCreate {
			return apierr.New("started_at_forbidden", "started_at is only allowed on /event/create")
		}
		if !ok {
			return apierr.New("invalid_started_at", "started_at "+timeRule)
		}
		f.StartedAt = &ms
	}

	if ms, present, ok := timeValue(req.GetEndedAt()); present {
		if op.Route != RouteClose {
			return apierr.New("ended_at_forbidden", "ended_at is only allowed on /event/close")
		}
		if !ok {
			return apierr.New("invalid_ended_at", "ended_at "+timeRule)
		}
		f.EndedAt = &ms
	}
	return nil
}

// timeValue reads a time field. present is false for nil and NullValue. ok is true when the value
// is an integral number or a string of decimal digits (surrounding space allowed), in 1..2^53−1;
// ms is then the value in Unix milliseconds.
func timeValue(v *structpb.Value) (ms int64, present, ok bool) {
	var n uint64
	switch k := v.GetKind().(type) {
	case nil:
		if v == nil {
			return 0, false, false
		}
		return 0, true, false // a Value with no kind set (gRPC)
	case *structpb.Value_NullValue:
		return 0, false, false
	case *structpb.Value_NumberValue:
		x := k.NumberValue
		if !(x > 0 && x <= maxTimeValue && x == math.Trunc(x)) {
			return 0, true, false
		}
		n = uint64(x)
	case *structpb.Value_StringValue:
		s := strings.TrimSpace(k.StringValue)
		if s == "" || strings.TrimLeft(s, "0123456789") != "" {
			return 0, true, false
		}
		var err error
		n, err = strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 || n > maxTimeValue {
			return 0, true, false
		}
	default:
		return 0, true, false
	}
	if n < msThreshold {
		n *= 1000
	}
	return int64(n), true, true
}
