package jsonreq

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// scalar converts v to the value of a non-message field (or list element, or map value) fd.
func scalar(fd protoreflect.FieldDescriptor, v *node) (protoreflect.Value, *fieldError) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if v.kind != kindString {
			return protoreflect.Value{}, problem("expected a string")
		}
		return protoreflect.ValueOfString(v.text), nil
	case protoreflect.BoolKind:
		if v.kind != kindBool {
			return protoreflect.Value{}, problem("expected true or false")
		}
		return protoreflect.ValueOfBool(v.boolean), nil
	case protoreflect.BytesKind:
		b, err := bytesValue(v)
		return protoreflect.ValueOfBytes(b), err
	case protoreflect.EnumKind:
		if v.kind != kindString {
			return protoreflect.Value{}, problem("expected an enum value name")
		}
		ev := fd.Enum().Values().ByName(protoreflect.Name(v.text))
		if ev == nil {
			return protoreflect.Value{}, problemf("unknown enum value %q", shorten(v.text))
		}
		return protoreflect.ValueOfEnum(ev.Number()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := intValue(v, 32)
		return protoreflect.ValueOfInt32(int32(n)), err
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := intValue(v, 64)
		return protoreflect.ValueOfInt64(n), err
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := uintValue(v, 32)
		return protoreflect.ValueOfUint32(uint32(n)), err
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := uintValue(v, 64)
		return protoreflect.ValueOfUint64(n), err
	case protoreflect.FloatKind:
		f, err := floatValue(v, 32)
		return protoreflect.ValueOfFloat32(float32(f)), err
	case protoreflect.DoubleKind:
		f, err := floatValue(v, 64)
		return protoreflect.ValueOfFloat64(f), err
	default:
		return protoreflect.Value{}, problemf("unsupported field kind %s", fd.Kind())
	}
}

// isIntegerText reports whether s is a JSON integer literal: -?(0|[1-9][0-9]*).
func isIntegerText(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func intValue(v *node, bits int) (int64, *fieldError) {
	if v.kind != kindNumber || !isIntegerText(v.text) {
		return 0, problem("expected an integer")
	}
	n, err := strconv.ParseInt(v.text, 10, bits)
	if err != nil {
		return 0, problemf("expected an integer in the int%d range", bits)
	}
	return n, nil
}

func uintValue(v *node, bits int) (uint64, *fieldError) {
	if v.kind != kindNumber || !isIntegerText(v.text) {
		return 0, problem("expected an integer")
	}
	if v.text == "-0" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v.text, 10, bits)
	if err != nil {
		return 0, problemf("expected an integer in the uint%d range", bits)
	}
	return n, nil
}

// floatValue parses a number node; values that overflow the type are rejected, values that
// underflow become zero.
func floatValue(v *node, bits int) (float64, *fieldError) {
	if v.kind != kindNumber {
		return 0, problem("expected a number")
	}
	f, _ := strconv.ParseFloat(v.text, bits) // the parser has checked the syntax
	if math.IsInf(f, 0) {
		return 0, problemf("number out of the float%d range", bits)
	}
	return f, nil
}

// bytesValue decodes a base64 string, standard or URL alphabet, padded or not (as protojson).
func bytesValue(v *node) ([]byte, *fieldError) {
	if v.kind != kindString {
		return nil, problem("expected a base64 string")
	}
	enc := base64.StdEncoding
	if strings.ContainsAny(v.text, "-_") {
		enc = base64.URLEncoding
	}
	if len(v.text)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	b, err := enc.DecodeString(v.text)
	if err != nil {
		return nil, problem("expected a base64 string")
	}
	return b, nil
}

// mapKey converts a JSON object key to a map key of kind kd.
func mapKey(kd protoreflect.FieldDescriptor, key string) (protoreflect.MapKey, *fieldError) {
	switch kd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(key).MapKey(), nil
	case protoreflect.BoolKind:
		switch key {
		case "true":
			return protoreflect.ValueOfBool(true).MapKey(), nil
		case "false":
			return protoreflect.ValueOfBool(false).MapKey(), nil
		}
		return protoreflect.MapKey{}, problem("map key must be \"true\" or \"false\"")
	default: // integer keys, below
	}
	// Integer keys are written as JSON integer literals inside the key string.
	num := node{kind: kindNumber, text: key}
	switch kd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := intValue(&num, 32)
		return protoreflect.ValueOfInt32(int32(n)).MapKey(), mapKeyErr(err)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := intValue(&num, 64)
		return protoreflect.ValueOfInt64(n).MapKey(), mapKeyErr(err)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := uintValue(&num, 32)
		return protoreflect.ValueOfUint32(uint32(n)).MapKey(), mapKeyErr(err)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := uintValue(&num, 64)
		return protoreflect.ValueOfUint64(n).MapKey(), mapKeyErr(err)
	default:
		return protoreflect.MapKey{}, problemf("unsupported map key kind %s", kd.Kind())
	}
}

func mapKeyErr(err *fieldError) *fieldError {
	if err != nil {
		err.problem = "map key: " + err.problem
	}
	return err
}
