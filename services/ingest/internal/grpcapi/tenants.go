package grpcapi

import (
	"context"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/ingest/internal/tenants"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

// Tenants implements TenantService, the admin routes of hosted mode. The interceptor has
// checked the admin token before any of these runs.
type Tenants struct {
	apiv1.UnimplementedTenantServiceServer
	Store *tenants.Store
}

// Create makes a tenant and returns its API key, once.
func (s *Tenants) Create(ctx context.Context, req *apiv1.CreateTenantRequest) (*apiv1.CreateTenantResponse, error) {
	name, verr := validate.TenantName(req.GetName())
	if verr != nil {
		return nil, verr
	}
	rec, key, err := s.Store.Create(ctx, name, req.GetLimits())
	if err != nil {
		return nil, err
	}
	t := s.tenant(rec)
	return &apiv1.CreateTenantResponse{TenantId: t.GetTenantId(), Name: t.GetName(), ApiKey: key,
		Limits: t.GetLimits(), EffectiveLimits: t.GetEffectiveLimits(), CreatedAt: t.GetCreatedAt()}, nil
}

// Update renames a tenant and/or replaces its limits.
func (s *Tenants) Update(ctx context.Context, req *apiv1.UpdateTenantRequest) (*apiv1.Tenant, error) {
	id, verr := validate.TenantID(req.GetTenantId())
	if verr != nil {
		return nil, verr
	}
	var name *string
	if req.Name != nil {
		n, verr := validate.TenantName(req.GetName())
		if verr != nil {
			return nil, verr
		}
		name = &n
	}
	rec, err := s.Store.Update(ctx, id, name, req.Limits != nil, req.GetLimits())
	if err != nil {
		return nil, err
	}
	return s.tenant(rec), nil
}

// Delete removes a tenant.
func (s *Tenants) Delete(ctx context.Context, req *apiv1.DeleteTenantRequest) (*apiv1.DeleteTenantResponse, error) {
	id, verr := validate.TenantID(req.GetTenantId())
	if verr != nil {
		return nil, verr
	}
	if err := s.Store.Delete(ctx, id); err != nil {
		return nil, err
	}
	return &apiv1.DeleteTenantResponse{TenantId: id, Deleted: true}, nil
}

// List returns every tenant, oldest first.
func (s *Tenants) List(ctx context.Context, _ *apiv1.ListTenantsRequest) (*apiv1.ListTenantsResponse, error) {
	recs, err := s.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	out := &apiv1.ListTenantsResponse{Tenants: make([]*apiv1.Tenant, 0, len(recs))}
	for _, rec := range recs {
		out.Tenants = append(out.Tenants, s.tenant(rec))
	}
	return out, nil
}

// Usage returns a tenant's usage today and its resources now.
func (s *Tenants) Usage(ctx context.Context, req *apiv1.TenantUsageRequest) (*apiv1.TenantUsage, error) {
	id, verr := validate.TenantID(req.GetTenantId())
	if verr != nil {
		return nil, verr
	}
	return s.Store.Usage(ctx, id)
}

// tenant is the API view of a record: never its key hash.
func (s *Tenants) tenant(rec *busv1.TenantRecord) *apiv1.Tenant {
	limits := rec.GetLimits()
	if limits == nil {
		limits = &apiv1.TenantLimits{}
	}
	return &apiv1.Tenant{TenantId: rec.GetTenantId(), Name: rec.GetName(), Limits: limits,
		EffectiveLimits: s.Store.Effective(rec.GetLimits()), CreatedAt: rec.GetCreatedAt(), UpdatedAt: rec.GetUpdatedAt()}
}
