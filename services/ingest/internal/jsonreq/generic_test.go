package jsonreq_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"

	"pushgo.dev/gateway/services/ingest/internal/jsonreq"
)

// allKinds builds, as a dynamic descriptor, a message with every field shape Decode supports:
//
//	enum Color { COLOR_UNSPECIFIED = 0; RED = 1; }
//	message Inner { int32 n = 1; }
//	message All {
//	  int32 i32 = 1; uint64 u64 = 2; float f = 3; double d = 4; bytes b = 5; Color color = 6;
//	  map<int64, string> m = 7; oneof choice { string a = 8; string z = 9; }
//	  repeated google.protobuf.Value vals = 10; Inner inner = 11; repeated Inner inners = 12;
//	  bool flag = 13; google.protobuf.Struct st = 14; sint32 s32 = 15; fixed64 fx = 16;
//	  map<bool, Inner> mb = 17; repeated int32 nums = 18; optional string opt = 19;
//	}
func allKinds(t *testing.T) protoreflect.MessageDescriptor {
	t.Helper()
	type ft = descriptorpb.FieldDescriptorProto_Type
	optional := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	repeated := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	field := func(name string, num int32, typ ft, typeName string, label *descriptorpb.FieldDescriptorProto_Label) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(), Label: label}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	entry := func(name string, key ft, val ft, valType string) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{
			Name:    proto.String(name),
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
			Field: []*descriptorpb.FieldDescriptorProto{
				field("key", 1, key, "", optional),
				field("value", 2, val, valType, optional),
			},
		}
	}
	inOneof := func(f *descriptorpb.FieldDescriptorProto, idx int32) *descriptorpb.FieldDescriptorProto {
		f.OneofIndex = proto.Int32(idx)
		return f
	}
	opt := field("opt", 19, descriptorpb.FieldDescriptorProto_TYPE_STRING, "", optional)
	opt.Proto3Optional = proto.Bool(true)
	opt.OneofIndex = proto.Int32(1)

	const (
		tInt32   = descriptorpb.FieldDescriptorProto_TYPE_INT32
		tUint64  = descriptorpb.FieldDescriptorProto_TYPE_UINT64
		tFloat   = descriptorpb.FieldDescriptorProto_TYPE_FLOAT
		tDouble  = descriptorpb.FieldDescriptorProto_TYPE_DOUBLE
		tBytes   = descriptorpb.FieldDescriptorProto_TYPE_BYTES
		tEnum    = descriptorpb.FieldDescriptorProto_TYPE_ENUM
		tInt64   = descriptorpb.FieldDescriptorProto_TYPE_INT64
		tString  = descriptorpb.FieldDescriptorProto_TYPE_STRING
		tMessage = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
		tBool    = descriptorpb.FieldDescriptorProto_TYPE_BOOL
		tSint32  = descriptorpb.FieldDescriptorProto_TYPE_SINT32
		tFixed64 = descriptorpb.FieldDescriptorProto_TYPE_FIXED64
	)
	file := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("jsonreq_generic_test.proto"),
		Package:    proto.String("jsonreqtest"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/struct.proto"},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name: proto.String("Color"),
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("COLOR_UNSPECIFIED"), Number: proto.Int32(0)},
				{Name: proto.String("RED"), Number: proto.Int32(1)},
			},
		}},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Inner"), Field: []*descriptorpb.FieldDescriptorProto{field("n", 1, tInt32, "", optional)}},
			{
				Name: proto.String("All"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("i32", 1, tInt32, "", optional),
					field("u64", 2, tUint64, "", optional),
					field("f", 3, tFloat, "", optional),
					field("d", 4, tDouble, "", optional),
					field("b", 5, tBytes, "", optional),
					field("color", 6, tEnum, ".jsonreqtest.Color", optional),
					field("m", 7, tMessage, ".jsonreqtest.All.MEntry", repeated),
					inOneof(field("a", 8, tString, "", optional), 0),
					inOneof(field("z", 9, tString, "", optional), 0),
					field("vals", 10, tMessage, ".google.protobuf.Value", repeated),
					field("inner", 11, tMessage, ".jsonreqtest.Inner", optional),
					field("inners", 12, tMessage, ".jsonreqtest.Inner", repeated),
					field("flag", 13, tBool, "", optional),
					field("st", 14, tMessage, ".google.protobuf.Struct", optional),
					field("s32", 15, tSint32, "", optional),
					field("fx", 16, tFixed64, "", optional),
					field("mb", 17, tMessage, ".jsonreqtest.All.MbEntry", repeated),
					field("nums", 18, tInt32, "", repeated),
					opt,
				},
				NestedType: []*descriptorpb.DescriptorProto{
					entry("MEntry", tInt64, tString, ""),
					entry("MbEntry", tBool, tMessage, ".jsonreqtest.Inner"),
				},
				OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("choice")}, {Name: proto.String("_opt")}},
			},
		},
	}
	fd, err := protodesc.NewFile(file, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatalf("build test descriptor: %v", err)
	}
	return fd.Messages().ByName("All")
}

func TestDecodeDynamicMessage(t *testing.T) {
	t.Parallel()
	md := allKinds(t)
	fields := md.Fields()

	t.Run("all shapes", func(t *testing.T) {
		t.Parallel()
		m := dynamicpb.NewMessage(md)
		body := `{"i32":-7,"u64":18446744073709551615,"f":1.5,"d":-2e-3,"b":"aGk=","color":"RED",
			"m":{"-1":"neg","5":"five"},"a":"x","z":null,"vals":[null,1,"s",[true],{"k":{}}],
			"inner":{"n":3},"inners":[{"n":1},{}],"flag":true,"st":{"x":[1,{"y":null}]},
			"s32":-5,"fx":42,"mb":{"true":{"n":9}},"nums":[1,2,3],"opt":""}`
		if err := jsonreq.Decode([]byte(body), m); err != nil {
			t.Fatalf("Decode = %v", err)
		}
		checks := []struct {
			field string
			got   any
			want  any
		}{
			{"i32", m.Get(fields.ByName("i32")).Int(), int64(-7)},
			{"u64", m.Get(fields.ByName("u64")).Uint(), uint64(18446744073709551615)},
			{"f", m.Get(fields.ByName("f")).Float(), 1.5},
			{"d", m.Get(fields.ByName("d")).Float(), -2e-3},
			{"b", string(m.Get(fields.ByName("b")).Bytes()), "hi"},
			{"color", m.Get(fields.ByName("color")).Enum(), protoreflect.EnumNumber(1)},
			{"m[-1]", m.Get(fields.ByName("m")).Map().Get(protoreflect.ValueOfInt64(-1).MapKey()).String(), "neg"},
			{"m len", m.Get(fields.ByName("m")).Map().Len(), 2},
			{"a", m.Get(fields.ByName("a")).String(), "x"},
			{"vals len", m.Get(fields.ByName("vals")).List().Len(), 5},
			{"inner.n", m.Get(fields.ByName("inner")).Message().Get(md.ParentFile().Messages().ByName("Inner").Fields().ByName("n")).Int(), int64(3)},
			{"inners len", m.Get(fields.ByName("inners")).List().Len(), 2},
			{"flag", m.Get(fields.ByName("flag")).Bool(), true},
			{"s32", m.Get(fields.ByName("s32")).Int(), int64(-5)},
			{"fx", m.Get(fields.ByName("fx")).Uint(), uint64(42)},
			{"mb len", m.Get(fields.ByName("mb")).Map().Len(), 1},
			{"nums len", m.Get(fields.ByName("nums")).List().Len(), 3},
			{"opt present", m.Has(fields.ByName("opt")), true},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
			}
		}
		// The dynamic Value and Struct contents round-trip to the generated types.
		st := &structpb.Struct{}
		b, err := proto.Marshal(m.Get(fields.ByName("st")).Message().Interface())
		if err != nil {
			t.Fatalf("marshal st: %v", err)
		}
		if err := proto.Unmarshal(b, st); err != nil {
			t.Fatalf("unmarshal st: %v", err)
		}
		wantSt := &structpb.Struct{Fields: map[string]*structpb.Value{
			"x": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
				structpb.NewNumberValue(1),
				structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"y": structpb.NewNullValue()}}),
			}}),
		}}
		if !proto.Equal(st, wantSt) {
			t.Errorf("st = %v, want %v", st, wantSt)
		}
	})

	errs := []struct {
		name     string
		body     string
		wantCode string
		wantMsg  string
	}{
		{name: "oneof conflict", body: `{"a":"x","z":"y"}`, wantCode: "invalid_json_data",
			wantMsg: `field "z": conflicts with "a": both are members of oneof "choice"`},
		{name: "unknown enum", body: `{"color":"BLUE"}`, wantCode: "invalid_json_data",
			wantMsg: `field "color": unknown enum value "BLUE"`},
		{name: "enum number", body: `{"color":1}`, wantCode: "invalid_json_data"},
		{name: "bad base64", body: `{"b":"!!"}`, wantCode: "invalid_json_data"},
		{name: "bad int map key", body: `{"m":{"x":"v"}}`, wantCode: "invalid_json_data",
			wantMsg: `field "m.x": map key: expected an integer`},
		{name: "map key with plus", body: `{"m":{"+1":"v"}}`, wantCode: "invalid_json_data"},
		{name: "bad bool map key", body: `{"mb":{"yes":{}}}`, wantCode: "invalid_json_data"},
		{name: "null map value", body: `{"m":{"1":null}}`, wantCode: "invalid_json_data"},
		{name: "null message map value", body: `{"mb":{"true":null}}`, wantCode: "invalid_json_data"},
		{name: "null repeated message", body: `{"inners":[null]}`, wantCode: "invalid_json_data",
			wantMsg: `field "inners[0]": expected an object`},
		{name: "float32 overflow", body: `{"f":1e39}`, wantCode: "invalid_json_data"},
		{name: "uint64 overflow", body: `{"u64":18446744073709551616}`, wantCode: "invalid_json_data"},
		{name: "unknown nested in map value", body: `{"mb":{"true":{"q":1}}}`, wantCode: "unknown_field",
			wantMsg: `unknown field "mb.true.q"`},
		{name: "string for repeated int", body: `{"nums":[1,"2"]}`, wantCode: "invalid_json_data",
			wantMsg: `field "nums[1]": expected an integer`},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := jsonreq.Decode([]byte(tt.body), dynamicpb.NewMessage(md))
			if got == nil || got.Code != tt.wantCode {
				t.Fatalf("Decode(%s) = %v, want %s", tt.body, got, tt.wantCode)
			}
			if tt.wantMsg != "" && got.Msg != tt.wantMsg {
				t.Errorf("Decode(%s) message = %q, want %q", tt.body, got.Msg, tt.wantMsg)
			}
		})
	}
}
