package validate

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// maxTenantNameLen caps tenant names (tenant.proto).
const maxTenantNameLen = 128

// tenantIDLen is the length of a tenant id: 32 lowercase hex characters.
const tenantIDLen = 32

// TenantName checks a tenant name and returns it trimmed.
//
// Errors: tenant_name_required (blank), invalid_tenant_name (over 128 characters after
// trimming, or any control character).
func TenantName(s string) (string, *apierr.Error) {
	name := strings.TrimSpace(s)
	if name == "" {
		return "", apierr.New("tenant_name_required", "name is required")
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxTenantNameLen ||
		strings.ContainsFunc(name, unicode.IsControl) {
		return "", apierr.Newf("invalid_tenant_name", "name must be at most %d characters and contain no control characters", maxTenantNameLen)
	}
	return name, nil
}

// TenantID checks a tenant id: 32 lowercase hex characters.
//
// Errors: tenant_id_required (blank), invalid_tenant_id.
func TenantID(s string) (string, *apierr.Error) {
	if strings.TrimSpace(s) == "" {
		return "", apierr.New("tenant_id_required", "tenant_id is required")
	}
	if len(s) != tenantIDLen || strings.ContainsFunc(s, func(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') }) {
		return "", apierr.New("invalid_tenant_id", "tenant_id must be 32 lowercase hex characters")
	}
	return s, nil
}
