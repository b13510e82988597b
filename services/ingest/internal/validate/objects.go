package validate

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Limits of metadata (DESIGN.md §6.3).
const (
	maxMetadataKeyLen   = 64
	maxMetadataValueLen = 512
)

// checkObjects checks attrs and metadata (kept as given) and copies ciphertext.
func (op *Op) checkObjects(req *apiv1.EventRequest) *apierr.Error {
	if attrs := req.GetAttrs(); attrs != nil {
		if key, problem := firstProblem(attrs, attrsProblem); problem != "" {
			return apierr.Newf("invalid_attrs", "attrs[%s]: %s", key, problem)
		}
		op.Fields.Attrs = attrs
	}
	if metadata := req.GetMetadata(); metadata != nil {
		if key, problem := firstProblem(metadata, metadataProblem); problem != "" {
			return apierr.Newf("invalid_metadata", "metadata[%s]: %s", key, problem)
		}
		op.Fields.Metadata = metadata
	}
	if c := req.GetCiphertext(); c != "" {
		op.Fields.Ciphertext = &c
	}
	return nil
}

// firstProblem checks every entry of st and returns the problem of the smallest failing key (so
// the answer does not depend on map order), with the key quoted for a message; "" if none.
func firstProblem(st *structpb.Struct, check func(string, *structpb.Value) string) (quotedKey, problem string) {
	var badKey string
	for k, v := range st.GetFields() {
		if problem != "" && k >= badKey {
			continue
		}
		if p := check(k, v); p != "" {
			badKey, problem = k, p
		}
	}
	if problem == "" {
		return "", ""
	}
	return quoteKey(badKey), problem
}

// attrsProblem checks one attrs entry: a non-blank key; a null, bool, finite number or string
// value, or a one-level object of those.
func attrsProblem(k string, v *structpb.Value) string {
	if strings.TrimSpace(k) == "" {
		return "keys must not be blank"
	}
	if obj, ok := v.GetKind().(*structpb.Value_StructValue); ok {
		if key, problem := firstProblem(obj.StructValue, attrsInnerProblem); problem != "" {
			return fmt.Sprintf("nested key %s: %s", key, problem)
		}
		return ""
	}
	return attrsScalarProblem(v)
}

// attrsInnerProblem checks an entry of an object inside attrs: no further nesting.
func attrsInnerProblem(k string, v *structpb.Value) string {
	if strings.TrimSpace(k) == "" {
		return "keys must not be blank"
	}
	if _, ok := v.GetKind().(*structpb.Value_StructValue); ok {
		return "objects may be nested one level only"
	}
	return attrsScalarProblem(v)
}

func attrsScalarProblem(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue, *structpb.Value_BoolValue, *structpb.Value_StringValue:
		return ""
	case *structpb.Value_NumberValue:
		return finiteProblem(k.NumberValue)
	case *structpb.Value_ListValue:
		return "arrays are not allowed"
	default:
		return "value is missing"
	}
}

// metadataProblem checks one metadata entry: a key of 1..64 characters after trimming; a string
// (at most 512 characters), finite number or bool value.
func metadataProblem(k string, v *structpb.Value) string {
	switch tk := strings.TrimSpace(k); {
	case tk == "":
		return "keys must not be blank"
	case utf8.RuneCountInString(tk) > maxMetadataKeyLen:
		return fmt.Sprintf("keys must be at most %d characters", maxMetadataKeyLen)
	}
	switch x := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		if utf8.RuneCountInString(x.StringValue) > maxMetadataValueLen {
			return fmt.Sprintf("string values must be at most %d characters", maxMetadataValueLen)
		}
		return ""
	case *structpb.Value_NumberValue:
		return finiteProblem(x.NumberValue)
	case *structpb.Value_BoolValue:
		return ""
	default:
		return "values must be strings, numbers or booleans"
	}
}

func finiteProblem(f float64) string {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return "numbers must be finite"
	}
	return ""
}

// maxKeyInMessage bounds how much of a client-supplied key an error message echoes.
const maxKeyInMessage = 64

// quoteKey quotes k for an error message, cut to maxKeyInMessage bytes on a rune boundary.
func quoteKey(k string) string {
	if len(k) <= maxKeyInMessage {
		return fmt.Sprintf("%q", k)
	}
	cut := maxKeyInMessage
	for cut > 0 && !utf8.RuneStart(k[cut]) {
		cut--
	}
	return fmt.Sprintf("%q…", k[:cut])
}
