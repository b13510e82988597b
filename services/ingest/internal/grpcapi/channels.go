package grpcapi

import (
	"context"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/channels"
	"pushgo.dev/gateway/services/ingest/internal/devices"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

// Channels implements ChannelService.
type Channels struct {
	apiv1.UnimplementedChannelServiceServer
	Store   *channels.Store
	Devices *devices.Store
}

// Subscribe adds a device to a channel, creating the channel when named instead of given.
func (s *Channels) Subscribe(ctx context.Context, req *apiv1.SubscribeRequest) (*apiv1.SubscribeResponse, error) {
	return s.Devices.Subscribe(ctx, req)
}

// Unsubscribe removes a device from a channel.
func (s *Channels) Unsubscribe(ctx context.Context, req *apiv1.UnsubscribeRequest) (*apiv1.UnsubscribeResponse, error) {
	return s.Devices.Unsubscribe(ctx, req)
}

// Create makes a channel.
func (s *Channels) Create(ctx context.Context, req *apiv1.CreateChannelRequest) (*apiv1.CreateChannelResponse, error) {
	name, password, verr := validate.CreateChannel(req)
	if verr != nil {
		return nil, verr
	}
	rec, err := s.Store.Create(ctx, name, password)
	if err != nil {
		return nil, err
	}
	return &apiv1.CreateChannelResponse{ChannelId: rec.GetChannelId(), ChannelName: rec.GetName(), Created: true}, nil
}
