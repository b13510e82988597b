package validate_test

import (
	"math"
	"regexp"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

// fullFields sets every field of EventFields.
func fullFields() *apiv1.EventFields {
	return &apiv1.EventFields{
		ThingId:     ptr("host:1"),
		Title:       ptr("Deploy"),
		Description: ptr("api v2"),
		Status:      "running",
		Message:     "step 1",
		Severity:    "normal",
		EventTime:   1713750000000,
		StartedAt:   ptr(int64(1713749000000)),
		EndedAt:     ptr(int64(1713751000000)),
		Tags:        strs("a", "b"),
		Images:      strs("https://example.com/a.png"),
		Attrs: obj(map[string]*structpb.Value{
			"n": num(1.5), "s": str("x"), "b": structpb.NewBoolValue(true), "z": structpb.NewNullValue(),
			"o": objValue(map[string]*structpb.Value{"k": str("v"), "m": num(-2)}),
		}),
		Metadata:   obj(map[string]*structpb.Value{"trace": str("abc"), "n": num(3)}),
		Ciphertext: ptr("Zm9v"),
	}
}

// TestFingerprintGolden pins the encoding: these values must never change (they are stored in
// op records), on any build or Go version. They were cross-checked against an independent
// implementation of the encoding documented on Fingerprint.
func TestFingerprintGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"full create", validate.Fingerprint(validate.RouteCreate, validChannel, "", fullFields()),
			"0091eb4b30e11659becbd3b9ba76ab808d472ac70f12a29ce384499e549a0ae0"},
		{"empty fields", validate.Fingerprint(validate.RouteUpdate, validChannel, "evt-1", &apiv1.EventFields{}),
			"f1797225a6da9c3e8abf3fc50cab4d1c4bb00c4e6f4329b522129aca76c93f77"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.got != tt.want {
				t.Errorf("Fingerprint = %s, want %s", tt.got, tt.want)
			}
		})
	}
}

func TestFingerprintFormat(t *testing.T) {
	t.Parallel()
	got := validate.Fingerprint(validate.RouteCreate, validChannel, "", fullFields())
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(got) {
		t.Errorf("Fingerprint = %q, want 64 lowercase hex digits", got)
	}
}

// TestFingerprintEqual lists inputs that must fingerprint the same.
func TestFingerprintEqual(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b func() *apiv1.EventFields
	}{
		{"clone", fullFields, func() *apiv1.EventFields { return proto.Clone(fullFields()).(*apiv1.EventFields) }},
		{"nil and empty fields", func() *apiv1.EventFields { return nil }, func() *apiv1.EventFields { return &apiv1.EventFields{} }},
		{"negative zero is zero",
			func() *apiv1.EventFields {
				return &apiv1.EventFields{Attrs: obj(map[string]*structpb.Value{"a": num(0)})}
			},
			func() *apiv1.EventFields {
				return &apiv1.EventFields{Attrs: obj(map[string]*structpb.Value{"a": num(math.Copysign(0, -1))})}
			}},
		{"nil and empty Struct map",
			func() *apiv1.EventFields { return &apiv1.EventFields{Attrs: &structpb.Struct{}} },
			func() *apiv1.EventFields { return &apiv1.EventFields{Attrs: obj(map[string]*structpb.Value{})} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := validate.Fingerprint(validate.RouteUpdate, validChannel, "e", tt.a())
			b := validate.Fingerprint(validate.RouteUpdate, validChannel, "e", tt.b())
			if a != b {
				t.Errorf("fingerprints differ: %s vs %s", a, b)
			}
		})
	}
}

// TestFingerprintMapOrder builds large Structs so that map iteration order varies between runs.
func TestFingerprintMapOrder(t *testing.T) {
	t.Parallel()
	build := func() *apiv1.EventFields {
		kv := map[string]*structpb.Value{}
		for i := range 64 {
			kv["k"+strconv.Itoa(i)] = num(float64(i))
		}
		return &apiv1.EventFields{Attrs: obj(kv), Metadata: obj(kv)}
	}
	want := validate.Fingerprint(validate.RouteCreate, validChannel, "", build())
	for range 50 {
		if got := validate.Fingerprint(validate.RouteCreate, validChannel, "", build()); got != want {
			t.Fatalf("fingerprint depends on map order: %s vs %s", got, want)
		}
	}
}

// TestFingerprintDistinct changes one thing at a time; every variant must differ from the base
// and from every other variant.
func TestFingerprintDistinct(t *testing.T) {
	t.Parallel()
	type input struct {
		route   validate.Route
		channel string
		eventID string
		fields  *apiv1.EventFields
	}
	base := func() input { return input{validate.RouteUpdate, validChannel, "evt-1", fullFields()} }
	edit := func(f func(*input)) input {
		in := base()
		f(&in)
		return in
	}
	fields := func(f func(*apiv1.EventFields)) input { return edit(func(in *input) { f(in.fields) }) }
	variants := []struct {
		name string
		in   input
	}{
		{"base", base()},
		{"route", edit(func(in *input) { in.route = validate.RouteClose })},
		{"channel", edit(func(in *input) { in.channel = "00000000000000000000000000" })},
		{"event_id", edit(func(in *input) { in.eventID = "evt-2" })},
		{"event_id empty", edit(func(in *input) { in.eventID = "" })},
		{"thing_id absent", fields(func(f *apiv1.EventFields) { f.ThingId = nil })},
		{"thing_id empty", fields(func(f *apiv1.EventFields) { f.ThingId = ptr("") })},
		{"title absent", fields(func(f *apiv1.EventFields) { f.Title = nil })},
		{"title changed", fields(func(f *apiv1.EventFields) { f.Title = ptr("Deploy!") })},
		{"description absent", fields(func(f *apiv1.EventFields) { f.Description = nil })},
		{"title and description swapped", fields(func(f *apiv1.EventFields) { f.Title, f.Description = f.Description, f.Title })},
		{"status", fields(func(f *apiv1.EventFields) { f.Status = "runnin" })},
		{"status/message boundary", fields(func(f *apiv1.EventFields) { f.Status, f.Message = "runnings", "tep 1" })},
		{"message", fields(func(f *apiv1.EventFields) { f.Message = "step 2" })},
		{"severity", fields(func(f *apiv1.EventFields) { f.Severity = "high" })},
		{"event_time", fields(func(f *apiv1.EventFields) { f.EventTime++ })},
		{"started_at absent", fields(func(f *apiv1.EventFields) { f.StartedAt = nil })},
		{"started_at", fields(func(f *apiv1.EventFields) { f.StartedAt = ptr(int64(1)) })},
		{"ended_at absent", fields(func(f *apiv1.EventFields) { f.EndedAt = nil })},
		{"started_at and ended_at swapped", fields(func(f *apiv1.EventFields) { f.StartedAt, f.EndedAt = f.EndedAt, f.StartedAt })},
		{"tags absent", fields(func(f *apiv1.EventFields) { f.Tags = nil })},
		{"tags empty", fields(func(f *apiv1.EventFields) { f.Tags = list() })},
		{"tags order", fields(func(f *apiv1.EventFields) { f.Tags = strs("b", "a") })},
		{"tags joined", fields(func(f *apiv1.EventFields) { f.Tags = strs("ab") })},
		{"tags and images swapped", fields(func(f *apiv1.EventFields) { f.Tags, f.Images = f.Images, f.Tags })},
		{"images absent", fields(func(f *apiv1.EventFields) { f.Images = nil })},
		{"attrs absent", fields(func(f *apiv1.EventFields) { f.Attrs = nil })},
		{"attrs empty", fields(func(f *apiv1.EventFields) { f.Attrs = obj(nil) })},
		{"attrs number", fields(func(f *apiv1.EventFields) { f.Attrs.Fields["n"] = num(1.25) })},
		{"attrs number as string", fields(func(f *apiv1.EventFields) { f.Attrs.Fields["n"] = str("1.5") })},
		{"attrs null removed", fields(func(f *apiv1.EventFields) { delete(f.Attrs.Fields, "z") })},
		{"attrs null to false", fields(func(f *apiv1.EventFields) { f.Attrs.Fields["z"] = structpb.NewBoolValue(false) })},
		{"attrs bool", fields(func(f *apiv1.EventFields) { f.Attrs.Fields["b"] = structpb.NewBoolValue(false) })},
		{"attrs key renamed", fields(func(f *apiv1.EventFields) { f.Attrs.Fields["s2"] = f.Attrs.Fields["s"]; delete(f.Attrs.Fields, "s") })},
		{"attrs nested", fields(func(f *apiv1.EventFields) { f.Attrs.Fields["o"].GetStructValue().Fields["k"] = str("w") })},
		{"attrs value kind unset", fields(func(f *apiv1.EventFields) { f.Attrs.Fields["z"] = &structpb.Value{} })},
		{"attrs list", fields(func(f *apiv1.EventFields) { f.Attrs.Fields["z"] = structpb.NewListValue(list()) })},
		{"attrs and metadata swapped", fields(func(f *apiv1.EventFields) { f.Attrs, f.Metadata = f.Metadata, f.Attrs })},
		{"metadata absent", fields(func(f *apiv1.EventFields) { f.Metadata = nil })},
		{"metadata value", fields(func(f *apiv1.EventFields) { f.Metadata.Fields["n"] = num(4) })},
		{"ciphertext absent", fields(func(f *apiv1.EventFields) { f.Ciphertext = nil })},
		{"ciphertext empty", fields(func(f *apiv1.EventFields) { f.Ciphertext = ptr("") })},
	}
	seen := map[string]string{}
	for _, v := range variants {
		fp := validate.Fingerprint(v.in.route, v.in.channel, v.in.eventID, v.in.fields)
		if other, dup := seen[fp]; dup {
			t.Errorf("variants %q and %q have the same fingerprint %s", v.name, other, fp)
		}
		seen[fp] = v.name
	}
}
