package httpapi

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// appendMessage writes m as JSON with the API's conventions, which differ from protojson's:
// field names are the snake_case proto names; every field is present; unset optional scalars
// and messages are null; 64-bit integers are JSON numbers (times in ms and counts stay below
// 2^53); Struct, Value and ListValue are plain JSON.
func appendMessage(b []byte, m protoreflect.Message) []byte {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Struct":
		return appendStruct(b, m)
	case "google.protobuf.Value":
		return appendValue(b, m)
	case "google.protobuf.ListValue":
		return appendList(b, m)
	}
	b = append(b, '{')
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, string(fd.Name()))
		b = append(b, ':')
		switch {
		case fd.IsList():
			b = appendListField(b, fd, m.Get(fd).List())
		case fd.IsMap():
			b = appendMapField(b, fd, m.Get(fd).Map())
		case fd.HasPresence() && !m.Has(fd):
			b = append(b, "null"...)
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			b = appendMessage(b, m.Get(fd).Message())
		default:
			b = appendScalar(b, fd, m.Get(fd))
		}
	}
	return append(b, '}')
}

func appendListField(b []byte, fd protoreflect.FieldDescriptor, l protoreflect.List) []byte {
	b = append(b, '[')
	for i := range l.Len() {
		if i > 0 {
			b = append(b, ',')
		}
		if fd.Kind() == protoreflect.MessageKind {
			b = appendMessage(b, l.Get(i).Message())
		} else {
			b = appendScalar(b, fd, l.Get(i))
		}
	}
	return append(b, ']')
}

func appendMapField(b []byte, fd protoreflect.FieldDescriptor, mp protoreflect.Map) []byte {
	// Keys are written sorted so that the same message always gives the same bytes.
	keys := make([]protoreflect.MapKey, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k.String())
		b = append(b, ':')
		if v := mp.Get(k); fd.MapValue().Kind() == protoreflect.MessageKind {
			b = appendMessage(b, v.Message())
		} else {
			b = appendScalar(b, fd.MapValue(), v)
		}
	}
	return append(b, '}')
}

func appendScalar(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool())
	case protoreflect.StringKind:
		return appendString(b, v.String())
	case protoreflect.BytesKind:
		return appendString(b, string(v.Bytes()))
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendString(b, string(ev.Name()))
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.AppendInt(b, v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(b, v.Uint(), 10)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return appendFloat(b, v.Float())
	default:
		return append(b, "null"...)
	}
}

func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

func appendStruct(b []byte, m protoreflect.Message) []byte {
	fd := m.Descriptor().Fields().ByName("fields")
	return appendMapField(b, fd, m.Get(fd).Map())
}

func appendList(b []byte, m protoreflect.Message) []byte {
	fd := m.Descriptor().Fields().ByName("values")
	return appendListField(b, fd, m.Get(fd).List())
}

func appendValue(b []byte, m protoreflect.Message) []byte {
	od := m.Descriptor().Oneofs().ByName("kind")
	fd := m.WhichOneof(od)
	if fd == nil {
		return append(b, "null"...)
	}
	v := m.Get(fd)
	switch fd.Name() {
	case "number_value":
		return appendFloat(b, v.Float())
	case "string_value":
		return appendString(b, v.String())
	case "bool_value":
		return strconv.AppendBool(b, v.Bool())
	case "struct_value":
		return appendStruct(b, v.Message())
	case "list_value":
		return appendList(b, v.Message())
	default:
		return append(b, "null"...)
	}
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
