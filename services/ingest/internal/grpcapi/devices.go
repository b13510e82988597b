package grpcapi

import (
	"context"
	"errors"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/devices"
	"pushgo.dev/gateway/services/ingest/internal/hooklog"
	"pushgo.dev/gateway/services/ingest/internal/inbox"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

// Devices implements DeviceService.
type Devices struct {
	apiv1.UnimplementedDeviceServiceServer
	Store *devices.Store
	Hooks *hooklog.Log
}

// Register issues or confirms a device key.
func (s *Devices) Register(ctx context.Context, req *apiv1.RegisterDeviceRequest) (*apiv1.RegisterDeviceResponse, error) {
	return s.Store.Register(ctx, req)
}

// SetRoute sets how pushes reach a device.
func (s *Devices) SetRoute(ctx context.Context, req *apiv1.SetRouteRequest) (*apiv1.SetRouteResponse, error) {
	return s.Store.SetRoute(ctx, req)
}

// Attempts lists the attempts to deliver to a device's webhook, newest first.
func (s *Devices) Attempts(ctx context.Context, req *apiv1.AttemptsRequest) (*apiv1.AttemptsResponse, error) {
	key, limit, verr := validate.Attempts(req)
	if verr != nil {
		return nil, verr
	}
	if err := s.Store.Check(ctx, key); err != nil {
		return nil, err
	}
	attempts, err := s.Hooks.Recent(ctx, key, limit)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		e := apierr.New("unavailable", "the webhook attempts are unavailable; retry later")
		e.RetryAfter = 5
		return nil, errors.Join(e, err)
	}
	return &apiv1.AttemptsResponse{Attempts: attempts}, nil
}

// Messages implements MessageService over a device's inbox.
type Messages struct {
	apiv1.UnimplementedMessageServiceServer
	Devices *devices.Store
	Inbox   *inbox.Inbox
}

// Pull returns the oldest items of a device's inbox.
func (s *Messages) Pull(ctx context.Context, req *apiv1.PullRequest) (*apiv1.PullResponse, error) {
	key, limit, verr := validate.Pull(req)
	if verr != nil {
		return nil, verr
	}
	if err := s.Devices.Check(ctx, key); err != nil {
		return nil, err
	}
	items, err := s.Inbox.Pull(ctx, key, limit)
	if err != nil {
		return nil, err
	}
	return &apiv1.PullResponse{Items: items}, nil
}

// Ack removes one item of a device's inbox.
func (s *Messages) Ack(ctx context.Context, req *apiv1.AckRequest) (*apiv1.AckResponse, error) {
	key, id, verr := validate.Ack(req)
	if verr != nil {
		return nil, verr
	}
	if err := s.Devices.Check(ctx, key); err != nil {
		return nil, err
	}
	removed, err := s.Inbox.Ack(ctx, key, id)
	if err != nil {
		return nil, err
	}
	return &apiv1.AckResponse{Removed: removed}, nil
}

// Activities implements ActivityService: the tokens of a device's Live Activities.
type Activities struct {
	apiv1.UnimplementedActivityServiceServer
	Devices *devices.Store
}

// Register stores a push-to-start token or an activity's token.
func (s *Activities) Register(ctx context.Context, req *apiv1.ActivityRequest) (*apiv1.ActivityResponse, error) {
	return s.Devices.Activity(ctx, req, true)
}

// Unregister drops a push-to-start token or an activity's token.
func (s *Activities) Unregister(ctx context.Context, req *apiv1.ActivityRequest) (*apiv1.ActivityResponse, error) {
	return s.Devices.Activity(ctx, req, false)
}
