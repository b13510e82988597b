package jsonreq

import (
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// wellKnown says which google.protobuf JSON type a message field holds.
type wellKnown uint8

const (
	wktNone wellKnown = iota
	wktStruct
	wktValue
	wktListValue
)

func wellKnownOf(md protoreflect.MessageDescriptor) wellKnown {
	if md == nil {
		return wktNone
	}
	switch md.FullName() {
	case "google.protobuf.Struct":
		return wktStruct
	case "google.protobuf.Value":
		return wktValue
	case "google.protobuf.ListValue":
		return wktListValue
	default:
		return wktNone
	}
}

// messageInfo is the lookup table of one message type: JSON key (the exact proto field name)
// to field.
type messageInfo struct {
	desc   protoreflect.MessageDescriptor
	byName map[string]*fieldInfo
	// numFields is the number of fields; fieldInfo.index is below it.
	numFields int
}

// fieldInfo is what the decoder needs to know about one field, computed once per type.
type fieldInfo struct {
	fd    protoreflect.FieldDescriptor
	index int
	// oneof is the field's real (non-synthetic) oneof, or nil.
	oneof protoreflect.OneofDescriptor
	// wkt is the JSON type of the field's message, list element or map value.
	wkt wellKnown
}

// infos caches *messageInfo by message full name.
var infos sync.Map

// infoFor returns the lookup table of md, building and caching it on first use. A descriptor
// that is not the cached one under its name (a dynamic descriptor) gets a fresh, uncached table,
// so the cache holds at most one entry per generated type.
func infoFor(md protoreflect.MessageDescriptor) *messageInfo {
	if v, ok := infos.Load(md.FullName()); ok {
		if mi := v.(*messageInfo); mi.desc == md {
			return mi
		}
		return buildInfo(md)
	}
	mi := buildInfo(md)
	if v, loaded := infos.LoadOrStore(md.FullName(), mi); loaded {
		if cached := v.(*messageInfo); cached.desc == md {
			return cached
		}
	}
	return mi
}

func buildInfo(md protoreflect.MessageDescriptor) *messageInfo {
	fields := md.Fields()
	mi := &messageInfo{
		desc:      md,
		byName:    make(map[string]*fieldInfo, fields.Len()),
		numFields: fields.Len(),
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		fi := &fieldInfo{fd: fd, index: i}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			fi.oneof = od
		}
		if fd.IsMap() {
			fi.wkt = wellKnownOf(fd.MapValue().Message())
		} else {
			fi.wkt = wellKnownOf(fd.Message())
		}
		mi.byName[string(fd.Name())] = fi
	}
	return mi
}
