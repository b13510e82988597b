package grpcapi

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logctx"
	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/proto/tracing"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/channels"
	"pushgo.dev/gateway/services/ingest/internal/opgate"
	"pushgo.dev/gateway/services/ingest/internal/ops"
	"pushgo.dev/gateway/services/ingest/internal/reader"
	"pushgo.dev/gateway/services/ingest/internal/tenants"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

// Events implements EventService: checks of DESIGN.md §6.2 steps 4–7 in order (field rules,
// channel, then the op's outcome), with the rate limits of §8.2 between the channel and the op.
type Events struct {
	apiv1.UnimplementedEventServiceServer
	Channels *channels.Store
	Ops      *ops.Submitter
	Reader   *reader.Reader
	// Limits, when set, is asked before an authorised create, update or close is recorded.
	Limits OpLimiter
	// Turns, when set, makes the admitted ops of one channel take turns (opgate.Gate), so
	// that a channel's burst does not crowd out the others.
	Turns *opgate.Gate
}

// OpLimiter decides whether an event op on a channel may run now (ratelimit.EventOps): nil, or
// an *apierr.Error (429 rate_limited with Retry-After).
type OpLimiter interface {
	AllowOp(ctx context.Context, channelID string) error
}

// Create starts an event.
func (s *Events) Create(ctx context.Context, req *apiv1.EventRequest) (*apiv1.EventOpResult, error) {
	return s.op(ctx, validate.RouteCreate, req)
}

// Update changes an ongoing event.
func (s *Events) Update(ctx context.Context, req *apiv1.EventRequest) (*apiv1.EventOpResult, error) {
	return s.op(ctx, validate.RouteUpdate, req)
}

// Close ends an event.
func (s *Events) Close(ctx context.Context, req *apiv1.EventRequest) (*apiv1.EventOpResult, error) {
	return s.op(ctx, validate.RouteClose, req)
}

func (s *Events) op(ctx context.Context, route validate.Route, req *apiv1.EventRequest) (res *apiv1.EventOpResult, err error) {
	defer func() {
		outcome := "ok"
		if err != nil {
			outcome = apierr.FromError(err).Code
		}
		metrics.Ops.WithLabelValues(string(route), outcome).Inc()
	}()
	op, verr := validate.Event(route, req)
	if verr != nil {
		return nil, verr
	}
	if _, err := s.Channels.Authorize(ctx, op.ChannelID, op.Password); err != nil {
		return nil, err
	}
	// Before the op record: a refused op leaves none, so its op_id works when retried later.
	if s.Limits != nil {
		if err := s.Limits.AllowOp(ctx, op.ChannelID); err != nil {
			return nil, err
		}
	}
	tenants.CountOp(ctx) // hosted mode: the tenant's daily usage (memory only)
	leave, err := s.Turns.Enter(ctx, op.ChannelID)
	if err != nil {
		return nil, apierr.New("unavailable", "request cancelled while it waited for its channel's earlier ops")
	}
	defer leave()
	opID, given := op.OpID, op.OpID != ""
	if !given {
		opID = ops.NewOpID()
	}
	eventID := op.EventID
	if route == validate.RouteCreate {
		eventID = ops.NewEventID(op.ChannelID, opID, given)
	}
	ctx = logctx.WithOp(ctx, op.ChannelID, eventID, opID)
	if tracing.Enabled() {
		var span trace.Span
		ctx, span = tracing.Start(ctx, "pushgo/ingest", "op "+string(route), trace.WithAttributes(
			attribute.String("pushgo.channel_id", op.ChannelID), attribute.String("pushgo.event_id", eventID), attribute.String("pushgo.op_id", opID)))
		defer func() {
			if err != nil {
				span.SetStatus(codes.Error, apierr.FromError(err).Code)
			}
			span.End()
		}()
	}
	out, err := s.Ops.Submit(ctx, ops.Op{
		Route:       string(route),
		ChannelID:   op.ChannelID,
		OpID:        opID,
		EventID:     eventID,
		Fingerprint: validate.Fingerprint(route, op.ChannelID, op.EventID, op.Fields),
		Fields:      op.Fields,
	})
	if err != nil {
		return nil, err
	}
	return result(out)
}

// result turns a recorded outcome into the answer: the result on 200, the error otherwise
// (with the result as data for the 503 dispatch outcomes).
func result(out *busv1.Outcome) (*apiv1.EventOpResult, error) {
	if out.GetHttpStatus() == http.StatusOK {
		return out.GetResult(), nil
	}
	e := apierr.New(out.GetErrorCode(), out.GetError())
	if out.GetHttpStatus() == http.StatusServiceUnavailable && out.GetResult() != nil {
		e.Data = out.GetResult()
	}
	return nil, e
}

// Get returns an event's folded state.
func (s *Events) Get(ctx context.Context, req *apiv1.GetEventRequest) (*apiv1.Event, error) {
	ch, pw, ev, verr := validate.GetEvent(req)
	if verr != nil {
		return nil, verr
	}
	if _, err := s.Channels.Authorize(ctx, ch, pw); err != nil {
		return nil, err
	}
	return s.Reader.Get(ctx, ch, ev)
}

// History returns an event's recorded ops in log order.
func (s *Events) History(ctx context.Context, req *apiv1.GetEventRequest) (*apiv1.EventHistory, error) {
	ch, pw, ev, verr := validate.GetEvent(req)
	if verr != nil {
		return nil, verr
	}
	if _, err := s.Channels.Authorize(ctx, ch, pw); err != nil {
		return nil, err
	}
	return s.Reader.History(ctx, ch, ev)
}

// List pages through a channel's events.
func (s *Events) List(ctx context.Context, req *apiv1.ListEventsRequest) (*apiv1.ListEventsResponse, error) {
	q, verr := validate.ListEvents(req)
	if verr != nil {
		return nil, verr
	}
	if _, err := s.Channels.Authorize(ctx, q.ChannelID, q.Password); err != nil {
		return nil, err
	}
	return s.Reader.List(ctx, reader.Query{ChannelID: q.ChannelID, State: q.State, Limit: q.Limit, Cursor: q.Cursor})
}
