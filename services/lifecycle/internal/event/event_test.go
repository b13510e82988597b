package event

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

const (
	ch  = "06J0FZG1Y8XGG14VTQ4Y3G10MR"
	evt = "e1"
	t0  = int64(1713750000000)
)

func cmd(r Route, f Fields) Command { return Command{Route: r, ChannelID: ch, EventID: evt, Fields: f} }

func created(f ...func(*Fields)) Command {
	fl := Fields{Title: ptr("deploy"), Status: "running", Message: "started", Severity: "normal", EventTime: t0,
		Attrs: map[string]any{"service": "api", "progress": 0.0, "build": map[string]any{"id": "42", "arch": "amd64"}}}
	for _, fn := range f {
		fn(&fl)
	}
	return cmd(Create, fl)
}

func updated(at int64, f ...func(*Fields)) Command {
	fl := Fields{Status: "publishing", Message: "pushed", Severity: "high", EventTime: at}
	for _, fn := range f {
		fn(&fl)
	}
	return cmd(Update, fl)
}

func closed(at int64, f ...func(*Fields)) Command {
	fl := Fields{Status: "success", Message: "done", Severity: "low", EventTime: at}
	for _, fn := range f {
		fn(&fl)
	}
	return cmd(Close, fl)
}

// fold runs given through Decide, failing the test on any rejection.
func fold(t *testing.T, given []Command) *State {
	t.Helper()
	var s *State
	for i, c := range given {
		d, err := Decide(s, c, int64(1000+i))
		if err != nil {
			t.Fatalf("given[%d] (%s) rejected: %v", i, c.Route, err)
		}
		s = &d.State
	}
	return s
}

func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		given   []Command
		when    Command
		wantErr error
		check   func(t *testing.T, d Decision)
	}{
		{
			name: "create starts an ongoing event at version 1",
			when: created(),
			check: func(t *testing.T, d Decision) {
				want := State{EventID: evt, ChannelID: ch, Title: "deploy", Status: "running", Message: "started",
					Severity: "normal", StartedAt: t0, EventTime: t0, Version: 1, CreatedAt: 1000, UpdatedAt: 1000,
					Attrs: map[string]any{"service": "api", "progress": 0.0, "build": map[string]any{"id": "42", "arch": "amd64"}}}
				if !d.Applied || d.Version != 1 || !reflect.DeepEqual(d.State, want) {
					t.Fatalf("got %+v\nwant %+v", d, want)
				}
			},
		},
		{
			name: "create takes started_at, thing_id, description, tags and images when given",
			when: created(func(f *Fields) {
				f.StartedAt, f.ThingID, f.Description = ptr(t0-5000), ptr("db-1"), ptr("prod")
				f.Tags, f.Images = &[]string{"a", "b"}, &[]string{"https://x/y.png"}
			}),
			check: func(t *testing.T, d Decision) {
				s := d.State
				if s.StartedAt != t0-5000 || s.ThingID != "db-1" || s.Description != "prod" ||
					!reflect.DeepEqual(s.Tags, []string{"a", "b"}) || !reflect.DeepEqual(s.Images, []string{"https://x/y.png"}) {
					t.Fatalf("got %+v", s)
				}
			},
		},
		{
			name: "create drops null attrs",
			when: created(func(f *Fields) {
				f.Attrs = map[string]any{"a": nil, "b": 1.0, "c": map[string]any{"d": nil, "e": true}}
			}),
			check: func(t *testing.T, d Decision) {
				want := map[string]any{"b": 1.0, "c": map[string]any{"e": true}}
				if !reflect.DeepEqual(d.State.Attrs, want) {
					t.Fatalf("attrs = %v, want %v", d.State.Attrs, want)
				}
			},
		},
		{
			name:    "create of an existing event is event_exists",
			given:   []Command{created()},
			when:    created(),
			wantErr: ErrEventExists,
		},
		{
			name:    "update of an unknown event is event_not_found",
			when:    updated(t0),
			wantErr: ErrEventNotFound,
		},
		{
			name:    "close of an unknown event is event_not_found",
			when:    closed(t0),
			wantErr: ErrEventNotFound,
		},
		{
			name:  "update replaces status, message, severity and keeps the rest",
			given: []Command{created(func(f *Fields) { f.Tags = &[]string{"x"} })},
			when:  updated(t0 + 1000),
			check: func(t *testing.T, d Decision) {
				s := d.State
				if !d.Applied || d.Version != 2 || s.Status != "publishing" || s.Message != "pushed" || s.Severity != "high" ||
					s.Title != "deploy" || !reflect.DeepEqual(s.Tags, []string{"x"}) || s.EventTime != t0+1000 ||
					s.CreatedAt != 1000 || s.UpdatedAt != 2000 || s.Closed {
					t.Fatalf("got %+v", d)
				}
			},
		},
		{
			name:  "update replaces title, description, tags and images when given; empty tags clear",
			given: []Command{created(func(f *Fields) { f.Tags, f.Images = &[]string{"x"}, &[]string{"https://a"} })},
			when: updated(t0, func(f *Fields) {
				f.Title, f.Description, f.Tags, f.Images = ptr("t2"), ptr("d2"), &[]string{}, &[]string{"https://b"}
			}),
			check: func(t *testing.T, d Decision) {
				s := d.State
				if s.Title != "t2" || s.Description != "d2" || len(s.Tags) != 0 || !reflect.DeepEqual(s.Images, []string{"https://b"}) {
					t.Fatalf("got %+v", s)
				}
			},
		},
		{
			name:  "update merges attrs: null deletes, nested objects merge one level",
			given: []Command{created()},
			when: updated(t0, func(f *Fields) {
				f.Attrs = map[string]any{"service": nil, "progress": 0.75, "build": map[string]any{"arch": nil, "sha": "8f3c"}, "new": "x"}
			}),
			check: func(t *testing.T, d Decision) {
				want := map[string]any{"progress": 0.75, "build": map[string]any{"id": "42", "sha": "8f3c"}, "new": "x"}
				if !reflect.DeepEqual(d.State.Attrs, want) {
					t.Fatalf("attrs = %v, want %v", d.State.Attrs, want)
				}
			},
		},
		{
			name:  "an object replaces a scalar and a scalar replaces an object",
			given: []Command{created()},
			when: updated(t0, func(f *Fields) {
				f.Attrs = map[string]any{"service": map[string]any{"name": "api", "gone": nil}, "build": "b-42"}
			}),
			check: func(t *testing.T, d Decision) {
				want := map[string]any{"service": map[string]any{"name": "api"}, "progress": 0.0, "build": "b-42"}
				if !reflect.DeepEqual(d.State.Attrs, want) {
					t.Fatalf("attrs = %v, want %v", d.State.Attrs, want)
				}
			},
		},
		{
			name:  "late update is recorded as not applied and changes nothing",
			given: []Command{created(), updated(t0 + 5000)},
			when:  updated(t0+1000, func(f *Fields) { f.Title = ptr("stale") }),
			check: func(t *testing.T, d Decision) {
				if d.Applied || d.Version != 2 || d.State.Title != "deploy" || d.State.EventTime != t0+5000 || d.State.UpdatedAt != 1001 {
					t.Fatalf("got %+v", d)
				}
			},
		},
		{
			name:  "an update at the same event_time is not late",
			given: []Command{created()},
			when:  updated(t0),
			check: func(t *testing.T, d Decision) {
				if !d.Applied || d.Version != 2 {
					t.Fatalf("got %+v", d)
				}
			},
		},
		{
			name:  "close ends the event with ended_at defaulting to event_time",
			given: []Command{created(), updated(t0 + 1000)},
			when:  closed(t0 + 2000),
			check: func(t *testing.T, d Decision) {
				s := d.State
				if !d.Applied || d.Version != 3 || !s.Closed || s.EndedAt != t0+2000 || s.Status != "success" || s.EventTime != t0+2000 {
					t.Fatalf("got %+v", d)
				}
			},
		},
		{
			name:  "close takes ended_at when given",
			given: []Command{created()},
			when:  closed(t0+2000, func(f *Fields) { f.EndedAt = ptr(t0 + 1500) }),
			check: func(t *testing.T, d Decision) {
				if d.State.EndedAt != t0+1500 {
					t.Fatalf("ended_at = %d", d.State.EndedAt)
				}
			},
		},
		{
			name:  "a close older than the event is applied and event_time does not move backwards",
			given: []Command{created(), updated(t0 + 5000)},
			when:  closed(t0 + 1000),
			check: func(t *testing.T, d Decision) {
				if !d.Applied || !d.State.Closed || d.State.EventTime != t0+5000 || d.State.EndedAt != t0+1000 {
					t.Fatalf("got %+v", d)
				}
			},
		},
		{
			name:    "close with ended_at before started_at is invalid_ended_at",
			given:   []Command{created()},
			when:    closed(t0+1000, func(f *Fields) { f.EndedAt = ptr(t0 - 1) }),
			wantErr: ErrInvalidEndedAt,
		},
		{
			name:    "close whose default ended_at is before started_at is invalid_ended_at",
			given:   []Command{created(func(f *Fields) { f.StartedAt = ptr(t0 + 9000) })},
			when:    closed(t0),
			wantErr: ErrInvalidEndedAt,
		},
		{
			name:    "an update whose patch would take attrs past 64 KiB is attrs_too_large",
			given:   []Command{created(), updated(t0+1, withAttrs(bigAttrs("a", 40<<10)))},
			when:    updated(t0+2, withAttrs(bigAttrs("b", 30<<10))),
			wantErr: ErrAttrsTooLarge,
		},
		{
			name:    "a close is held to the same bound",
			given:   []Command{created(), updated(t0+1, withAttrs(bigAttrs("a", 40<<10)))},
			when:    closed(t0+2, withAttrs(bigAttrs("b", 30<<10))),
			wantErr: ErrAttrsTooLarge,
		},
		{
			name:  "a patch that deletes as much as it adds stays within the bound",
			given: []Command{created(), updated(t0+1, withAttrs(bigAttrs("a", 40<<10)))},
			when: updated(t0+2, withAttrs(func() map[string]any {
				p := bigAttrs("b", 40<<10)
				for k := range bigAttrs("a", 40<<10) {
					p[k] = nil
				}
				return p
			}())),
			check: func(t *testing.T, d Decision) {
				if !d.Applied || len(d.State.Attrs) != len(bigAttrs("b", 40<<10))+3 {
					t.Fatalf("applied %v with %d attrs", d.Applied, len(d.State.Attrs))
				}
			},
		},
		{
			name:    "update after close is event_closed",
			given:   []Command{created(), closed(t0)},
			when:    updated(t0 + 1),
			wantErr: ErrEventClosed,
		},
		{
			name:    "close after close is event_closed",
			given:   []Command{created(), closed(t0)},
			when:    closed(t0 + 1),
			wantErr: ErrEventClosed,
		},
		{
			name:    "a late update of a closed event is event_closed, not late",
			given:   []Command{created(), closed(t0 + 10)},
			when:    updated(t0),
			wantErr: ErrEventClosed,
		},
		{
			name:  "thing_id may be repeated",
			given: []Command{created(func(f *Fields) { f.ThingID = ptr("db-1") })},
			when:  updated(t0, func(f *Fields) { f.ThingID = ptr("db-1") }),
			check: func(t *testing.T, d Decision) {
				if d.State.ThingID != "db-1" {
					t.Fatalf("thing_id = %q", d.State.ThingID)
				}
			},
		},
		{
			name:  "thing_id is inherited when omitted",
			given: []Command{created(func(f *Fields) { f.ThingID = ptr("db-1") })},
			when:  closed(t0),
			check: func(t *testing.T, d Decision) {
				if d.State.ThingID != "db-1" {
					t.Fatalf("thing_id = %q", d.State.ThingID)
				}
			},
		},
		{
			name:    "a different thing_id is thing_id_mismatch",
			given:   []Command{created(func(f *Fields) { f.ThingID = ptr("db-1") })},
			when:    updated(t0, func(f *Fields) { f.ThingID = ptr("db-2") }),
			wantErr: ErrThingIDMismatch,
		},
		{
			name:    "a thing_id on an event created without one is thing_id_mismatch",
			given:   []Command{created()},
			when:    closed(t0, func(f *Fields) { f.ThingID = ptr("db-1") }),
			wantErr: ErrThingIDMismatch,
		},
		{
			name:    "event_closed is checked before thing_id_mismatch",
			given:   []Command{created(), closed(t0)},
			when:    updated(t0, func(f *Fields) { f.ThingID = ptr("other") }),
			wantErr: ErrEventClosed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fold(t, tt.given)
			d, err := Decide(s, tt.when, int64(1000+len(tt.given)*1000))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected rejection: %v", err)
			}
			tt.check(t, d)
		})
	}
}

// TestDecideDoesNotMutate guards the value semantics the store relies on: a state read once may
// be judged against several commands (OCC retries).
func TestDecideDoesNotMutate(t *testing.T) {
	t.Parallel()
	s := fold(t, []Command{created(func(f *Fields) { f.Tags = &[]string{"x"} })})
	before := *s
	before.Attrs = mergePatch(s.Attrs, nil)
	before.Attrs["build"] = mergePatch(s.Attrs["build"].(map[string]any), nil)
	before.Tags = append([]string(nil), s.Tags...)

	_, err := Decide(s, updated(t0, func(f *Fields) {
		f.Attrs = map[string]any{"service": nil, "build": map[string]any{"id": nil, "x": 1.0}}
		f.Tags = &[]string{"y"}
	}), 5)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*s, before) {
		t.Fatalf("Decide changed its input:\n got %+v\nwant %+v", *s, before)
	}
}

func TestVersionsHaveNoGaps(t *testing.T) {
	t.Parallel()
	s := fold(t, []Command{created()})
	for i := range 10 {
		// Every other update is late; late ones must not take a version.
		at := t0 + int64(i)*1000
		if i%2 == 1 {
			at = t0 - 1
		}
		d, err := Decide(s, updated(at), 1)
		if err != nil {
			t.Fatal(err)
		}
		s = &d.State
	}
	if s.Version != 6 {
		t.Fatalf("version after create + 5 applied updates = %d, want 6", s.Version)
	}
}

func withAttrs(a map[string]any) func(*Fields) { return func(f *Fields) { f.Attrs = a } }

// bigAttrs returns about size bytes of JSON attrs whose keys start with prefix.
func bigAttrs(prefix string, size int) map[string]any {
	out := map[string]any{}
	value := strings.Repeat("v", 100)
	for i := 0; i*(len(value)+12) < size; i++ {
		out[fmt.Sprintf("%s%05d", prefix, i)] = value
	}
	return out
}
