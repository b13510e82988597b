package validate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
)

// fingerprintVersion starts every encoding. The encoding below is part of the stored op records
// (pushgo_ops): changing it makes every in-window repeat an op_id_conflict, so change it only
// together with this version string and a migration note.
const fingerprintVersion = "pushgo.fingerprint.v1"

// Fingerprint returns the idempotency fingerprint of a normalised event op (DESIGN.md §4): the
// lowercase hex SHA-256 of a canonical encoding of route, channel id, event id and every field of
// f. Equal inputs give equal fingerprints on every build and Go version; any difference in a
// field, including absent versus empty, gives a different one. The password is not an input.
//
// The encoding is fixed by this code, not by the protobuf wire format: strings are
// length-prefixed, optional fields carry a presence byte, integers are 8-byte big-endian, and
// Struct/ListValue contents are encoded recursively with object keys sorted and numbers written by
// strconv.FormatFloat(v, 'g', -1, 64) (-0 as 0). A nil f is treated as an empty EventFields.
func Fingerprint(route Route, channelID, eventID string, f *apiv1.EventFields) string {
	if f == nil {
		f = &apiv1.EventFields{}
	}
	var e encoder
	e.str(fingerprintVersion)
	e.str(string(route))
	e.str(channelID)
	e.str(eventID)
	e.optStr(f.ThingId)
	e.optStr(f.Title)
	e.optStr(f.Description)
	e.str(f.GetStatus())
	e.str(f.GetMessage())
	e.str(f.GetSeverity())
	e.int(f.GetEventTime())
	e.optInt(f.StartedAt)
	e.optInt(f.EndedAt)
	e.optList(f.GetTags())
	e.optList(f.GetImages())
	e.optStruct(f.GetAttrs())
	e.optStruct(f.GetMetadata())
	e.optStr(f.Ciphertext)
	sum := sha256.Sum256(e.b)
	return hex.EncodeToString(sum[:])
}

// encoder builds the canonical byte encoding. Every element is self-delimiting, so distinct
// inputs cannot encode to the same bytes.
type encoder struct{ b []byte }

// Tags of google.protobuf.Value kinds.
const (
	tagUnset  = 'u'
	tagNull   = 'n'
	tagBool   = 'b'
	tagNumber = 'd'
	tagString = 's'
	tagList   = 'l'
	tagObject = 'o'
)

func (e *encoder) present(ok bool) {
	if ok {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) optStr(p *string) {
	e.present(p != nil)
	if p != nil {
		e.str(*p)
	}
}

func (e *encoder) int(n int64) {
	e.b = binary.BigEndian.AppendUint64(e.b, uint64(n))
}

func (e *encoder) optInt(p *int64) {
	e.present(p != nil)
	if p != nil {
		e.int(*p)
	}
}

func (e *encoder) optList(lv *structpb.ListValue) {
	e.present(lv != nil)
	if lv != nil {
		e.list(lv)
	}
}

func (e *encoder) optStruct(st *structpb.Struct) {
	e.present(st != nil)
	if st != nil {
		e.object(st)
	}
}

func (e *encoder) list(lv *structpb.ListValue) {
	values := lv.GetValues()
	e.b = binary.AppendUvarint(e.b, uint64(len(values)))
	for _, v := range values {
		e.value(v)
	}
}

func (e *encoder) object(st *structpb.Struct) {
	fields := st.GetFields()
	e.b = binary.AppendUvarint(e.b, uint64(len(fields)))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		e.str(k)
		e.value(fields[k])
	}
}

func (e *encoder) value(v *structpb.Value) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		e.b = append(e.b, tagNull)
	case *structpb.Value_BoolValue:
		e.b = append(e.b, tagBool)
		e.present(k.BoolValue)
	case *structpb.Value_NumberValue:
		n := k.NumberValue
		if n == 0 {
			n = 0 // -0 and 0 are the same JSON number
		}
		e.b = append(e.b, tagNumber)
		e.str(strconv.FormatFloat(n, 'g', -1, 64))
	case *structpb.Value_StringValue:
		e.b = append(e.b, tagString)
		e.str(k.StringValue)
	case *structpb.Value_ListValue:
		e.b = append(e.b, tagList)
		e.list(k.ListValue)
	case *structpb.Value_StructValue:
		e.b = append(e.b, tagObject)
		e.object(k.StructValue)
	default:
		e.b = append(e.b, tagUnset)
	}
}
