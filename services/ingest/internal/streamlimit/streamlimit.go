// Package streamlimit bounds the live streams (SSE and WebSocket) of one device and of one
// tenant (DESIGN.md §8.2): the stream routes call Acquire before they answer, and the release
// it returns when the stream ends. A refusal is 429 too_many_streams.
//
// Counts are kept in memory by each ingest instance: with N replicas behind a load balancer a
// device may hold up to N × the limit. What the limits protect — connections, goroutines and
// doorbell subscriptions — is per instance too, so each instance stays bounded; a stream
// counted by an instance that dies ends with its connections.
package streamlimit

import (
	"sync"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Config sets the limits; 0 turns one off.
type Config struct {
	// PerDevice is the most live streams of one device.
	PerDevice int
	// PerTenant is the most live streams of all devices of one tenant, unless TenantLimit
	// gives the tenant its own. Devices without a tenant (tenant id "") have no tenant limit.
	PerTenant int
	// TenantLimit, when set, returns a tenant's own limit (ok false: PerTenant applies; 0:
	// none). It is called once per Acquire, outside the limiter's lock.
	TenantLimit func(tenantID string) (limit int, ok bool)
}

// Limiter counts the live streams of devices and tenants. It is safe for concurrent use.
type Limiter struct {
	cfg Config

	mu      sync.Mutex
	devices map[string]int
	tenants map[string]int
}

// New returns a limiter with no streams open.
func New(cfg Config) *Limiter {
	return &Limiter{cfg: cfg, devices: map[string]int{}, tenants: map[string]int{}}
}

// Acquire admits one more live stream of deviceKey, a device of tenantID ("" for none), or
// refuses it with 429 too_many_streams when the device or the tenant already holds its limit.
// The caller must call release exactly once when the stream ends (later calls do nothing).
func (l *Limiter) Acquire(deviceKey, tenantID string) (release func(), err error) {
	tenantMax := 0
	if tenantID != "" {
		tenantMax = l.cfg.PerTenant
		if l.cfg.TenantLimit != nil {
			if n, ok := l.cfg.TenantLimit(tenantID); ok {
				tenantMax = n
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.PerDevice > 0 && l.devices[deviceKey] >= l.cfg.PerDevice {
		return nil, apierr.Newf("too_many_streams",
			"this device already has %d live streams (SSE and WebSocket), the most allowed; close one before opening another", l.cfg.PerDevice)
	}
	if tenantMax > 0 && l.tenants[tenantID] >= tenantMax {
		return nil, apierr.Newf("too_many_streams",
			"the tenant's devices already have %d live streams, the most allowed; close one before opening another", tenantMax)
	}
	l.devices[deviceKey]++
	l.tenants[tenantID]++
	var once sync.Once
	return func() { once.Do(func() { l.release(deviceKey, tenantID) }) }, nil
}

func (l *Limiter) release(deviceKey, tenantID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.devices[deviceKey]--; l.devices[deviceKey] <= 0 {
		delete(l.devices, deviceKey)
	}
	if l.tenants[tenantID]--; l.tenants[tenantID] <= 0 {
		delete(l.tenants, tenantID)
	}
}

// Count returns the live streams of tenantID's devices on this instance ("" counts the
// devices without a tenant).
func (l *Limiter) Count(tenantID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tenants[tenantID]
}
