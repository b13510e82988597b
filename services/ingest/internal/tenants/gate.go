package tenants

import (
	"context"
	"strings"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/auth"
)

// Class is who may call a route of a hosted gateway.
type Class int

// Classes of routes.
const (
	// ClassTenant routes take "Authorization: Bearer <tenant api key>".
	ClassTenant Class = iota
	// ClassDevice routes (/messages/pull|ack, /device/stream, /device/ws) take the device key in
	// the request as the credential; an Authorization header is ignored.
	ClassDevice
	// ClassAdmin routes (/admin/tenant/*, /metrics) take "Authorization: Bearer <admin token>".
	ClassAdmin
	// ClassOpen routes (/healthz, /readyz, /openapi.json, /docs) take nothing.
	ClassOpen
)

var (
	adminService    = "/" + apiv1.TenantService_ServiceDesc.ServiceName + "/"
	deviceService   = "/" + apiv1.MessageService_ServiceDesc.ServiceName + "/"
	activityService = "/" + apiv1.ActivityService_ServiceDesc.ServiceName + "/"
	// The standard gRPC health service: open, as /healthz and /readyz are.
	healthService = "/grpc.health.v1.Health/"
)

// MethodClass is the class of a gRPC method ("/pushgo.api.v1.EventService/Create").
func MethodClass(fullMethod string) Class {
	switch {
	case strings.HasPrefix(fullMethod, healthService):
		return ClassOpen
	case strings.HasPrefix(fullMethod, adminService):
		return ClassAdmin
	case strings.HasPrefix(fullMethod, deviceService), strings.HasPrefix(fullMethod, activityService):
		return ClassDevice
	default:
		return ClassTenant
	}
}

// PathClass is the class of an HTTP path. It agrees with MethodClass on every REST route of the
// services (a test checks it), and adds the streaming and health routes, which have no method.
func PathClass(path string) Class {
	switch {
	case path == "/healthz" || path == "/readyz" || path == "/openapi.json" || path == "/docs":
		return ClassOpen
	case strings.HasPrefix(path, "/admin/"), path == "/metrics":
		return ClassAdmin
	case path == "/messages/pull" || path == "/messages/ack" || path == "/device/stream" || path == "/device/ws",
		strings.HasPrefix(path, "/activity/"), strings.HasPrefix(path, "/v1/activity/"):
		return ClassDevice
	default:
		return ClassTenant
	}
}

// Gate authenticates the requests of a hosted gateway: the admin token on admin routes, a
// tenant's API key on tenant routes, nothing on device-keyed and open ones. It records what it
// learnt in the request's context (FromContext, Visible). A nil *Gate is not hosted mode.
type Gate struct {
	admin auth.Token
	store *Store
}

// NewGate returns the gate of a hosted gateway with this admin token.
func NewGate(adminToken string, store *Store) *Gate {
	return &Gate{admin: auth.NewToken(adminToken), store: store}
}

// Authenticate checks a request of class c with its Authorization header value and returns
// its context carrying the result: authentication_failed (401) for a missing or wrong
// credential, unavailable when a tenant this instance has not seen yet cannot be looked up.
// A context a Gate already authenticated is returned as it is (the REST middleware
// authenticates before the gRPC interceptor sees the call).
func (g *Gate) Authenticate(ctx context.Context, c Class, authorization string) (context.Context, error) {
	if authenticated(ctx) {
		return ctx, nil
	}
	switch c {
	case ClassOpen:
		return ctx, nil
	case ClassDevice:
		return withDeviceScope(ctx, g.store), nil
	case ClassAdmin:
		if !g.admin.Check(authorization) {
			return ctx, apierr.New("authentication_failed", "authentication failed: admin routes take Authorization: Bearer <admin token>")
		}
		return withAdmin(ctx, g.store), nil
	default:
		key, ok := bearer(authorization)
		if !ok {
			return ctx, authFailed()
		}
		t, err := g.store.Authenticate(ctx, key)
		if err != nil {
			return ctx, err
		}
		return WithTenant(ctx, t), nil
	}
}

// bearer returns the credential of "Bearer <credential>" (the scheme is case-insensitive).
func bearer(header string) (string, bool) {
	fields := strings.Fields(header)
	if len(fields) != 2 || !strings.EqualFold(fields[0], "bearer") {
		return "", false
	}
	return fields[1], true
}
