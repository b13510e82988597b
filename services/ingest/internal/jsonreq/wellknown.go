package jsonreq

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
)

// toValue converts any JSON value to a google.protobuf.Value (null becomes NullValue, numbers
// float64).
func toValue(v *node) (*structpb.Value, *fieldError) {
	switch v.kind {
	case kindNull:
		return structpb.NewNullValue(), nil
	case kindBool:
		return structpb.NewBoolValue(v.boolean), nil
	case kindNumber:
		f, err := floatValue(v, 64)
		if err != nil {
			return nil, err
		}
		return structpb.NewNumberValue(f), nil
	case kindString:
		return structpb.NewStringValue(v.text), nil
	case kindArray:
		lv, err := toList(v)
		if err != nil {
			return nil, err
		}
		return structpb.NewListValue(lv), nil
	case kindObject:
		st, err := toStruct(v)
		if err != nil {
			return nil, err
		}
		return structpb.NewStructValue(st), nil
	default:
		return nil, problem("unsupported JSON value")
	}
}

// toStruct converts a JSON object to a google.protobuf.Struct; a key given twice is
// duplicate_field.
func toStruct(v *node) (*structpb.Struct, *fieldError) {
	fields := make(map[string]*structpb.Value, len(v.kids))
	for i := range v.kids {
		mem := &v.kids[i]
		if _, dup := fields[mem.key]; dup {
			return nil, duplicate(mem.key)
		}
		val, err := toValue(mem)
		if err != nil {
			return nil, err.at(segment{key: mem.key})
		}
		fields[mem.key] = val
	}
	return &structpb.Struct{Fields: fields}, nil
}

// toList converts a JSON array to a google.protobuf.ListValue.
func toList(v *node) (*structpb.ListValue, *fieldError) {
	values := make([]*structpb.Value, len(v.kids))
	for i := range v.kids {
		val, err := toValue(&v.kids[i])
		if err != nil {
			return nil, err.at(segment{index: i, isIndex: true})
		}
		values[i] = val
	}
	return &structpb.ListValue{Values: values}, nil
}

// setWellKnown stores src in dst. dst is normally the generated structpb type and takes src's
// contents directly; any other implementation of the same message (a dynamic message) gets a
// copy through the wire format.
func setWellKnown(dst protoreflect.Message, src proto.Message) *fieldError {
	switch d := dst.Interface().(type) {
	case *structpb.Value:
		if s, ok := src.(*structpb.Value); ok {
			d.Kind = s.Kind
			return nil
		}
	case *structpb.Struct:
		if s, ok := src.(*structpb.Struct); ok {
			d.Fields = s.Fields
			return nil
		}
	case *structpb.ListValue:
		if s, ok := src.(*structpb.ListValue); ok {
			d.Values = s.Values
			return nil
		}
	}
	b, err := proto.Marshal(src)
	if err == nil {
		err = proto.UnmarshalOptions{Merge: true}.Unmarshal(b, dst.Interface())
	}
	if err != nil {
		return problem("value cannot be stored in this field")
	}
	return nil
}
