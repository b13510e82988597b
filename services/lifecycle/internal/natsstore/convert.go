package natsstore

import (
	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/lifecycle/internal/event"
)

// Event states as stored and shown.
const (
	StateOngoing = "ONGOING"
	StateClosed  = "CLOSED"
)

// StateFromProto rebuilds the fold's state from a stored head (nil for no history).
func StateFromProto(p *apiv1.Event) *event.State {
	if p == nil {
		return nil
	}
	return &event.State{
		EventID:     p.GetEventId(),
		ChannelID:   p.GetChannelId(),
		ThingID:     p.GetThingId(),
		Title:       p.GetTitle(),
		Description: p.GetDescription(),
		Status:      p.GetStatus(),
		Message:     p.GetMessage(),
		Severity:    p.GetSeverity(),
		Tags:        p.GetTags(),
		Images:      p.GetImages(),
		Attrs:       p.GetAttrs().AsMap(),
		StartedAt:   p.GetStartedAt(),
		EndedAt:     p.GetEndedAt(),
		EventTime:   p.GetEventTime(),
		Closed:      p.GetEventState() == StateClosed,
		Version:     p.GetVersion(),
		CreatedAt:   p.GetCreatedAt(),
		UpdatedAt:   p.GetUpdatedAt(),
	}
}

// StateToProto is the stored and shown form of a state.
func StateToProto(s event.State) (*apiv1.Event, error) {
	attrs, err := structpb.NewStruct(s.Attrs)
	if err != nil {
		return nil, err
	}
	p := &apiv1.Event{
		EventId:    s.EventID,
		ChannelId:  s.ChannelID,
		Title:      s.Title,
		Status:     s.Status,
		Message:    s.Message,
		Severity:   s.Severity,
		Tags:       s.Tags,
		Images:     s.Images,
		Attrs:      attrs,
		StartedAt:  s.StartedAt,
		EventTime:  s.EventTime,
		EventState: StateOngoing,
		Version:    s.Version,
		CreatedAt:  s.CreatedAt,
		UpdatedAt:  s.UpdatedAt,
	}
	if s.ThingID != "" {
		p.ThingId = &s.ThingID
	}
	if s.Description != "" {
		p.Description = &s.Description
	}
	if s.Closed {
		p.EventState = StateClosed
		p.EndedAt = &s.EndedAt
	}
	return p, nil
}

// FieldsFromProto is the fold's view of a validated op.
func FieldsFromProto(p *apiv1.EventFields) event.Fields {
	f := event.Fields{
		ThingID:     p.ThingId,
		Title:       p.Title,
		Description: p.Description,
		Status:      p.GetStatus(),
		Message:     p.GetMessage(),
		Severity:    p.GetSeverity(),
		EventTime:   p.GetEventTime(),
		StartedAt:   p.StartedAt,
		EndedAt:     p.EndedAt,
		Tags:        stringList(p.GetTags()),
		Images:      stringList(p.GetImages()),
	}
	if p.GetAttrs() != nil {
		f.Attrs = p.GetAttrs().AsMap()
	}
	return f
}

func stringList(l *structpb.ListValue) *[]string {
	if l == nil {
		return nil
	}
	out := make([]string, 0, len(l.GetValues()))
	for _, v := range l.GetValues() {
		out = append(out, v.GetStringValue())
	}
	return &out
}
