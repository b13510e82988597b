// Package jsonreq decodes JSON request bodies into protobuf messages with the gateway's strict
// rules (DESIGN.md §6.2 step 3): exact snake_case proto field names only, JSON types must match
// the field types, null leaves a field unset, and syntax, type and unknown-key faults map to the
// error codes invalid_json_syntax, invalid_json_data, unknown_field and duplicate_field.
//
// It works on any message through protoreflect, so new request types need no code here. It
// differs from protojson on purpose: lowerCamel JSON names are unknown fields, integers must be
// JSON numbers (not strings), and null never becomes google.protobuf.NullValue at field level.
package jsonreq

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Decode resets m and fills it from the JSON object in body. body is parsed once; the result is
// walked against m's descriptor (lookup tables are cached per message type, so Decode is safe
// for concurrent use).
//
// Rules, in short (the package comment says why they differ from protojson):
//   - body must be exactly one JSON value, an object, nested at most MaxDepth levels;
//   - every key must equal a field's proto name; otherwise unknown_field naming the key path;
//   - a key given twice in one object, at any depth → duplicate_field naming it (a proxy that
//     keeps the first value must never see another request than the one acted on);
//   - null leaves the field unset (inside Struct, ListValue and Value contents it is NullValue);
//   - string ← string; bool ← bool; bytes ← base64 string; enum ← value name string;
//     integer kinds ← a JSON number written as an integer literal in range (no fraction, no
//     exponent: 1e3 and 1.0 are rejected); float and double ← any number in range;
//   - google.protobuf.Struct ← object, ListValue ← array, Value ← any JSON value (numbers as
//     float64); any other message ← object, decoded recursively with these rules;
//   - repeated fields ← array (null elements are rejected except for Value elements);
//     map fields ← object (keys converted to the key type, null values rejected except Value);
//   - two members of the same oneof → invalid_json_data.
//
// On error m may be partly filled and must not be used.
func Decode(body []byte, m proto.Message) *apierr.Error {
	if m == nil || !m.ProtoReflect().IsValid() {
		return apierr.New("internal_error", "jsonreq.Decode: nil message")
	}
	root, err := parse(body)
	if err != nil {
		return err
	}
	if root.kind != kindObject {
		return apierr.New("invalid_json_data", "the request body must be a JSON object")
	}
	proto.Reset(m)
	if ferr := decodeMessage(m.ProtoReflect(), &root); ferr != nil {
		return ferr.apiError()
	}
	return nil
}

// decodeMessage fills msg from the object obj.
func decodeMessage(msg protoreflect.Message, obj *node) *fieldError {
	info := infoFor(msg.Descriptor())

	// Pass 1: every key must name a field and appear once (reported in document order).
	var buf [32]int
	var last []int
	if info.numFields <= len(buf) {
		last = buf[:info.numFields]
	} else {
		last = make([]int, info.numFields)
	}
	for i := range last {
		last[i] = -1
	}
	for i := range obj.kids {
		fi := info.byName[obj.kids[i].key]
		if fi == nil {
			return &fieldError{code: "unknown_field", rev: []segment{{key: obj.kids[i].key}}}
		}
		if last[fi.index] >= 0 {
			return duplicate(obj.kids[i].key)
		}
		last[fi.index] = i
	}

	// Pass 2: decode.
	for i := range obj.kids {
		mem := &obj.kids[i]
		fi := info.byName[mem.key]
		if err := decodeField(msg, fi, mem); err != nil {
			return err.at(segment{key: mem.key})
		}
	}
	return nil
}

// decodeField sets one field of msg from v.
func decodeField(msg protoreflect.Message, fi *fieldInfo, v *node) *fieldError {
	if v.kind == kindNull {
		return nil
	}
	fd := fi.fd
	if fi.oneof != nil {
		if set := msg.WhichOneof(fi.oneof); set != nil && set.Number() != fd.Number() {
			return problemf("conflicts with %q: both are members of oneof %q", set.Name(), fi.oneof.Name())
		}
	}
	switch {
	case fd.IsMap():
		if v.kind != kindObject {
			return problem("expected an object")
		}
		return decodeMap(msg.Mutable(fd).Map(), fi, v)
	case fd.IsList():
		if v.kind != kindArray {
			return problem("expected an array")
		}
		return decodeList(msg.Mutable(fd).List(), fi, v)
	case fd.Message() != nil:
		return decodeInto(msg.Mutable(fd).Message(), fi.wkt, v)
	default:
		val, err := scalar(fd, v)
		if err != nil {
			return err
		}
		msg.Set(fd, val)
		return nil
	}
}

// decodeInto fills the message dst, whose JSON type is wkt, from v.
func decodeInto(dst protoreflect.Message, wkt wellKnown, v *node) *fieldError {
	switch wkt {
	case wktValue:
		val, err := toValue(v)
		if err != nil {
			return err
		}
		return setWellKnown(dst, val)
	case wktStruct:
		if v.kind != kindObject {
			return problem("expected an object")
		}
		st, err := toStruct(v)
		if err != nil {
			return err
		}
		return setWellKnown(dst, st)
	case wktListValue:
		if v.kind != kindArray {
			return problem("expected an array")
		}
		lv, err := toList(v)
		if err != nil {
			return err
		}
		return setWellKnown(dst, lv)
	default:
		if v.kind != kindObject {
			return problem("expected an object")
		}
		return decodeMessage(dst, v)
	}
}

// decodeList appends the elements of the array v to list.
func decodeList(list protoreflect.List, fi *fieldInfo, v *node) *fieldError {
	fd := fi.fd
	for i := range v.kids {
		e := &v.kids[i]
		if fd.Message() != nil {
			elem := list.NewElement()
			if err := decodeInto(elem.Message(), fi.wkt, e); err != nil {
				return err.at(segment{index: i, isIndex: true})
			}
			list.Append(elem)
			continue
		}
		val, err := scalar(fd, e)
		if err != nil {
			return err.at(segment{index: i, isIndex: true})
		}
		list.Append(val)
	}
	return nil
}

// decodeMap sets the entries of the object v in mp; a key given twice is duplicate_field.
func decodeMap(mp protoreflect.Map, fi *fieldInfo, v *node) *fieldError {
	kd, vd := fi.fd.MapKey(), fi.fd.MapValue()
	for i := range v.kids {
		mem := &v.kids[i]
		k, err := mapKey(kd, mem.key)
		if err != nil {
			return err.at(segment{key: mem.key})
		}
		if mp.Has(k) {
			return duplicate(mem.key)
		}
		if vd.Message() != nil {
			val := mp.NewValue()
			if err := decodeInto(val.Message(), fi.wkt, mem); err != nil {
				return err.at(segment{key: mem.key})
			}
			mp.Set(k, val)
			continue
		}
		val, err := scalar(vd, mem)
		if err != nil {
			return err.at(segment{key: mem.key})
		}
		mp.Set(k, val)
	}
	return nil
}

// fieldError is a decode failure inside the top-level object. Path segments are collected on the
// way out (innermost first), so the success path spends nothing on error context.
type fieldError struct {
	code    string // invalid_json_data, unknown_field or duplicate_field
	rev     []segment
	problem string
}

// segment is one step of a field path: an object key or an array index.
type segment struct {
	key     string
	index   int
	isIndex bool
}

func problem(msg string) *fieldError {
	return &fieldError{code: "invalid_json_data", problem: msg}
}

// duplicate reports a key given twice in one object.
func duplicate(key string) *fieldError {
	return &fieldError{code: "duplicate_field", rev: []segment{{key: key}}}
}

func problemf(format string, args ...any) *fieldError {
	return problem(fmt.Sprintf(format, args...))
}

func (e *fieldError) at(s segment) *fieldError {
	e.rev = append(e.rev, s)
	return e
}

// maxKeyInMessage bounds how much of a client-supplied key is echoed in an error message.
const maxKeyInMessage = 64

func (e *fieldError) path() string {
	var b strings.Builder
	for i := len(e.rev) - 1; i >= 0; i-- {
		s := e.rev[i]
		switch {
		case s.isIndex:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(shorten(s.key))
		}
	}
	return b.String()
}

func (e *fieldError) apiError() *apierr.Error {
	if e.code == "unknown_field" {
		return apierr.Newf("unknown_field", "unknown field %q", e.path())
	}
	if e.code == "duplicate_field" {
		return apierr.Newf("duplicate_field", "field %q is given more than once", e.path())
	}
	return apierr.Newf(e.code, "field %q: %s", e.path(), e.problem)
}

// shorten cuts s to maxKeyInMessage bytes on a rune boundary, marking the cut with "…".
func shorten(s string) string {
	if len(s) <= maxKeyInMessage {
		return s
	}
	cut := maxKeyInMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
