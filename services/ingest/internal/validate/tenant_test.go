package validate

import (
	"strings"
	"testing"
)

func TestTenantFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		check    func(string) (string, string)
		in, want string
		code     string
	}{
		{"name trimmed", tenantName, "  acme  ", "acme", ""},
		{"name blank", tenantName, " \t", "", "tenant_name_required"},
		{"name 128 runes", tenantName, strings.Repeat("é", 128), strings.Repeat("é", 128), ""},
		{"name 129 runes", tenantName, strings.Repeat("é", 129), "", "invalid_tenant_name"},
		{"name control", tenantName, "a\nb", "", "invalid_tenant_name"},
		{"id ok", tenantID, strings.Repeat("0a", 16), strings.Repeat("0a", 16), ""},
		{"id blank", tenantID, "", "", "tenant_id_required"},
		{"id upper case", tenantID, strings.Repeat("0A", 16), "", "invalid_tenant_id"},
		{"id short", tenantID, strings.Repeat("0a", 15), "", "invalid_tenant_id"},
		{"id non-hex", tenantID, strings.Repeat("0g", 16), "", "invalid_tenant_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, code := tt.check(tt.in)
			if got != tt.want || code != tt.code {
				t.Fatalf("got %q, %q; want %q, %q", got, code, tt.want, tt.code)
			}
		})
	}
}

func tenantName(s string) (string, string) {
	v, err := TenantName(s)
	if err != nil {
		return v, err.Code
	}
	return v, ""
}

func tenantID(s string) (string, string) {
	v, err := TenantID(s)
	if err != nil {
		return v, err.Code
	}
	return v, ""
}
