package main

import (
	"cmp"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSeedFlow walks the product page's example: create, update, close, then read it back.
func TestSeedFlow(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)

	c := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "op-20260422-001", "title": "生产环境部署",
		"message": "部署任务已开始", "started_at": 1713750000000, "attrs": obj{"service": "api", "revision": "8f3c2a1"},
		"tags": []any{" prod ", "api", "prod"}}))
	ev := c["event_id"].(string)
	want := map[string]any{"channel_id": ch, "op_id": "op-20260422-001", "event_id": ev, "thing_id": nil,
		"accepted": true, "applied": true, "version": 1.0, "event_state": "ONGOING",
		"delivery": map[string]any{"targets": 0.0, "delivered": 0.0, "failed": 0.0}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("create data = %v\nwant %v", c, want)
	}
	if len(ev) != 32 {
		t.Fatalf("event_id %q is not 32 hex", ev)
	}

	u := g.mustOK(t, "/event/update", opBody(ch, ev, obj{"status": "publishing", "message": "镜像已推送,正在发布",
		"event_time": 1713750300, "attrs": obj{"progress": 0.75, "service": nil}}))
	if u["version"] != 2.0 || u["applied"] != true || len(u["op_id"].(string)) != 32 {
		t.Fatalf("update data = %v", u)
	}
	late := g.mustOK(t, "/event/update", opBody(ch, ev, obj{"status": "stale", "event_time": 1713750100000}))
	if late["applied"] != false || late["version"] != 2.0 || late["accepted"] != true {
		t.Fatalf("late update data = %v", late)
	}
	cl := g.mustOK(t, "/event/close", opBody(ch, ev, obj{"status": "success", "message": "生产环境部署完成",
		"event_time": "1713750600000", "attrs": obj{"progress": 1}}))
	if cl["version"] != 3.0 || cl["event_state"] != "CLOSED" {
		t.Fatalf("close data = %v", cl)
	}

	st := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
	for k, v := range map[string]any{"event_id": ev, "channel_id": ch, "title": "生产环境部署", "status": "success",
		"message": "生产环境部署完成", "severity": "normal", "event_state": "CLOSED", "version": 3.0,
		"started_at": 1713750000000.0, "ended_at": 1713750600000.0, "event_time": 1713750600000.0,
		"thing_id": nil, "description": nil} {
		if !reflect.DeepEqual(st[k], v) {
			t.Errorf("get %s = %v, want %v", k, st[k], v)
		}
	}
	if !reflect.DeepEqual(st["attrs"], map[string]any{"revision": "8f3c2a1", "progress": 1.0}) {
		t.Errorf("get attrs = %v", st["attrs"])
	}
	if !reflect.DeepEqual(st["tags"], []any{"prod", "api"}) {
		t.Errorf("get tags = %v", st["tags"])
	}
	if st["created_at"].(float64) <= 0 || st["updated_at"].(float64) < st["created_at"].(float64) {
		t.Errorf("created_at %v updated_at %v", st["created_at"], st["updated_at"])
	}

	h := g.mustOK(t, "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
	entries := h["entries"].([]any)
	var got []string
	for _, e := range entries {
		m := e.(map[string]any)
		got = append(got, fmt.Sprint(m["route"], "/", m["version"], "/", m["applied"]))
	}
	if want := []string{"create/1/true", "update/2/true", "update/2/false", "close/3/true"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("history = %v, want %v", got, want)
	}
	second := entries[1].(map[string]any)
	if f := second["fields"].(map[string]any); !reflect.DeepEqual(f["attrs"], map[string]any{"progress": 0.75, "service": nil}) ||
		second["event_time"] != 1713750300000.0 {
		t.Fatalf("history entry 2 = %v", second)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)
	var ids []string
	for i := range 5 {
		d := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": fmt.Sprint("list-", i)}))
		ids = append(ids, d["event_id"].(string))
	}
	g.mustOK(t, "/event/close", opBody(ch, ids[1], nil))
	g.mustOK(t, "/event/close", opBody(ch, ids[3], nil))

	var pages [][]string
	cursor := ""
	for range 10 {
		body := obj{"channel_id": ch, "password": "secret-123", "limit": 2}
		if cursor != "" {
			body["cursor"] = cursor
		}
		d := g.mustOK(t, "/event/list", body)
		var page []string
		for _, e := range d["events"].([]any) {
			page = append(page, e.(map[string]any)["event_id"].(string))
		}
		pages = append(pages, page)
		if d["next_cursor"] == nil {
			break
		}
		cursor = d["next_cursor"].(string)
	}
	// The order is newest created first, ties (creates within one millisecond) by event_id.
	created := map[string]int64{}
	for i, id := range ids {
		st := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": id})
		created[id] = int64(st["created_at"].(float64))
		if i > 0 && created[id] < created[ids[i-1]] {
			t.Fatalf("event %d created at %d, before event %d (%d)", i, created[id], i-1, created[ids[i-1]])
		}
	}
	order := slices.Clone(ids)
	slices.SortFunc(order, func(a, b string) int { return cmp.Or(cmp.Compare(created[b], created[a]), strings.Compare(a, b)) })
	want := [][]string{order[0:2], order[2:4], order[4:]}
	if !reflect.DeepEqual(pages, want) {
		t.Fatalf("pages = %v, want newest first %v", pages, want)
	}
	d := g.mustOK(t, "/event/list", obj{"channel_id": ch, "password": "secret-123", "event_state": "closed"})
	var closed []string
	for _, e := range d["events"].([]any) {
		closed = append(closed, e.(map[string]any)["event_id"].(string))
	}
	wantClosed := slices.DeleteFunc(slices.Clone(order), func(id string) bool { return id != ids[1] && id != ids[3] })
	if !reflect.DeepEqual(closed, wantClosed) || d["next_cursor"] != nil {
		t.Fatalf("closed = %v (next %v), want %v", closed, d["next_cursor"], wantClosed)
	}
	other := g.channel(t)
	if d := g.mustOK(t, "/event/list", obj{"channel_id": other, "password": "secret-123"}); len(d["events"].([]any)) != 0 {
		t.Fatalf("another channel lists %v", d["events"])
	}
}

// TestIdempotency covers DESIGN.md §4.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)

	body := createBody(ch, obj{"op_id": "idem-1"})
	first := g.post(t, "/event/create", body)
	replay := g.post(t, "/event/create", body)
	if first.status != http.StatusOK || replay.status != http.StatusOK || string(first.env.Data) != string(replay.env.Data) {
		t.Fatalf("replay answered %d %s, first %d %s", replay.status, replay.env.Data, first.status, first.env.Data)
	}
	ev := first.data(t)["event_id"].(string)

	// The same op_id with another body, or on another route, is a conflict.
	if r := g.post(t, "/event/create", createBody(ch, obj{"op_id": "idem-1", "title": "other"})); r.status != http.StatusConflict || r.code() != "op_id_conflict" {
		t.Fatalf("different body: %d %s", r.status, r.raw)
	}
	if r := g.post(t, "/event/update", opBody(ch, ev, obj{"op_id": "idem-1"})); r.code() != "op_id_conflict" {
		t.Fatalf("different route: %d %s", r.status, r.raw)
	}
	// Normalisation makes equivalent requests the same op.
	same := createBody(ch, obj{"op_id": "idem-1", "event_time": "1713750000", "severity": "NORMAL"})
	if r := g.post(t, "/event/create", same); r.status != http.StatusOK || r.data(t)["event_id"] != ev {
		t.Fatalf("equivalent body: %d %s", r.status, r.raw)
	}
	// A rejection is an outcome too: replaying it answers the same without a second try.
	ghost := opBody(ch, "no-such-event", obj{"op_id": "idem-ghost"})
	for range 2 {
		if r := g.post(t, "/event/update", ghost); r.status != http.StatusNotFound || r.code() != "event_not_found" {
			t.Fatalf("update of unknown event: %d %s", r.status, r.raw)
		}
	}

	// Concurrent duplicates: one append, one outcome for all.
	upd := opBody(ch, ev, obj{"op_id": "idem-concurrent", "message": "concurrent"})
	var wg sync.WaitGroup
	results := make([]string, 16)
	for i := range results {
		wg.Go(func() {
			r := g.post(t, "/event/update", upd)
			results[i] = fmt.Sprint(r.status, string(r.env.Data))
		})
	}
	wg.Wait()
	for _, r := range results {
		if r != results[0] {
			t.Fatalf("concurrent duplicates answered differently:\n%s\n%s", results[0], r)
		}
	}
	h := g.mustOK(t, "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
	if n := len(h["entries"].([]any)); n != 2 {
		t.Fatalf("history has %d entries after one create and 16 duplicate updates, want 2", n)
	}

	// The event_id of a create is derived from (channel, op_id): stable per channel, distinct
	// across channels.
	other := g.channel(t)
	if d := g.mustOK(t, "/event/create", createBody(other, obj{"op_id": "idem-1"})); d["event_id"] == ev {
		t.Fatal("the same op_id in another channel gave the same event_id")
	}
}

// TestEventExistsAfterWindow replays a create after its op record expired: the derived event_id
// already has history, so the answer is 409 event_exists rather than a second event.
func TestEventExistsAfterWindow(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{idempotencyWindow: 1500 * time.Millisecond})
	ch := g.channel(t)
	body := createBody(ch, obj{"op_id": "short-lived"})
	g.mustOK(t, "/event/create", body)
	var last response
	eventually(t, 20*time.Second, "the op record to expire", func() bool {
		last = g.post(t, "/event/create", body)
		return last.status != http.StatusOK
	})
	if last.status != http.StatusConflict || last.code() != "event_exists" {
		t.Fatalf("replay after the window: %d %s", last.status, last.raw)
	}
}

// TestAttrsStayBounded: attrs merge on every update, so an event's folded attrs are bounded
// (64 KiB of JSON); without the bound an event would outgrow the broker's message size and its
// next op could never be stored (it was answered dispatch_timeout forever).
func TestAttrsStayBounded(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)
	ev := g.mustOK(t, "/event/create", createBody(ch, nil))["event_id"].(string)
	set := func(prefix string) obj { // ~26 KB of JSON
		out := obj{}
		for i := range 250 {
			out[fmt.Sprintf("%s%04d", prefix, i)] = strings.Repeat("v", 90)
		}
		return out
	}
	at := int64(1713750300000)
	update := func(attrs obj) response {
		at++
		return g.post(t, "/event/update", opBody(ch, ev, obj{"attrs": attrs, "event_time": at}))
	}
	for _, p := range []string{"a", "b"} {
		if r := update(set(p)); r.status != http.StatusOK {
			t.Fatalf("update adding set %s: %d %s", p, r.status, r.raw)
		}
	}
	r := update(set("c"))
	if r.status != http.StatusBadRequest || r.code() != "attrs_too_large" {
		t.Fatalf("update past the bound: %d %s", r.status, r.raw)
	}
	// Making room first works, and the rejected op left no trace: versions go on from 3.
	swap := set("c")
	for k := range set("a") {
		swap[k] = nil
	}
	if r := update(swap); r.status != http.StatusOK || r.data(t)["version"] != 4.0 {
		t.Fatalf("update deleting set a and adding set c: %d %s", r.status, r.raw)
	}
	state := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
	if attrs, _ := state["attrs"].(map[string]any); len(attrs) != 500 {
		t.Fatalf("attrs after the swap hold %d keys, want 500", len(attrs))
	}
}
