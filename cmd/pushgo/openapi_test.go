package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"pushgo.dev/gateway/cmd/pushgo/internal/apiclient"
)

// TestGeneratedClient: the spec the gateway serves at /openapi.json is the one a standard
// generator (oapi-codegen, pinned in the Makefile; make gen) turned into
// internal/apiclient, and that client runs create, update, close and get against the gateway,
// reading both answers and error envelopes.
func TestGeneratedClient(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{token: "tok"})
	get := func(path string) (int, string, []byte) {
		resp, err := http.Get(g.url + path) // no token: the description is public
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	status, ctype, served := get("/openapi.json")
	want, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK || ctype != "application/json" || !bytes.Equal(served, want) {
		t.Fatalf("/openapi.json: %d %s, %d bytes; the client was generated from %s (%d bytes)", status, ctype, len(served), specFile, len(want))
	}
	if status, ctype, page := get("/docs"); status != http.StatusOK || !strings.HasPrefix(ctype, "text/html") ||
		!bytes.Contains(page, []byte("/event/create")) || !bytes.Contains(page, []byte("event_closed")) {
		t.Fatalf("/docs: %d %s", status, ctype)
	}

	bearer := func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer tok")
		return nil
	}
	c, err := apiclient.NewClientWithResponses(g.url, apiclient.WithRequestEditorFn(bearer))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ch, err := c.ChannelServiceCreateWithResponse(ctx, apiclient.CreateChannelRequest{ChannelName: "generated", Password: "secret-123"})
	if err != nil || ch.JSON200 == nil {
		t.Fatalf("channel create: %v %s", err, ch.Body)
	}
	channelID := ch.JSON200.Data.ChannelId
	ms := func(v int64) *int64 { return &v }
	title, opID := "Deploy api", "gen-1"
	created, err := c.EventServiceCreateWithResponse(ctx, apiclient.EventCreateRequest{ChannelId: channelID, Password: "secret-123",
		OpId: &opID, Title: title, Status: "running", Message: "step 1", Severity: "high", EventTime: ms(1713750000000),
		Attrs: &map[string]any{"step": 1}, Tags: &[]string{"deploy"}})
	if err != nil || created.JSON200 == nil || !created.JSON200.Data.Accepted || created.JSON200.Data.Version != 1 {
		t.Fatalf("create: %v %s", err, created.Body)
	}
	eventID := created.JSON200.Data.EventId
	updated, err := c.EventServiceUpdateWithResponse(ctx, apiclient.EventUpdateRequest{ChannelId: channelID, Password: "secret-123",
		EventId: &eventID, Status: "running", Message: "step 2", Severity: "high", EventTime: ms(1713750060000)})
	if err != nil || updated.JSON200 == nil || updated.JSON200.Data.Version != 2 {
		t.Fatalf("update: %v %s", err, updated.Body)
	}
	closed, err := c.EventServiceCloseWithResponse(ctx, apiclient.EventCloseRequest{ChannelId: channelID, Password: "secret-123",
		EventId: &eventID, Status: "done", Message: "shipped", Severity: "low", EventTime: ms(1713750120000), EndedAt: ms(1713750120000)})
	if err != nil || closed.JSON200 == nil || closed.JSON200.Data.EventState != "CLOSED" {
		t.Fatalf("close: %v %s", err, closed.Body)
	}
	ev, err := c.EventServiceGetWithResponse(ctx, apiclient.GetEventRequest{ChannelId: channelID, Password: "secret-123", EventId: eventID})
	if err != nil || ev.JSON200 == nil {
		t.Fatalf("get: %v %s", err, ev.Body)
	}
	if d := ev.JSON200.Data; d.Title != title || d.EventState != "CLOSED" || d.Version != 3 || d.EndedAt == nil || *d.EndedAt != 1713750120000 ||
		d.Tags[0] != "deploy" || d.ThingId != nil {
		t.Fatalf("get = %+v", d)
	}
	// An error answer is read into the route's declared error response.
	late, err := c.EventServiceUpdateWithResponse(ctx, apiclient.EventUpdateRequest{ChannelId: channelID, Password: "secret-123",
		EventId: &eventID, Status: "s", Message: "m", Severity: "low", EventTime: ms(1713750180000)})
	if err != nil || late.JSON409 == nil || late.JSON409.ErrorCode != apiclient.EventClosed {
		t.Fatalf("update after close: %v %d %s", err, late.StatusCode(), late.Body)
	}
	if _, err := apiclient.NewClientWithResponses(g.url); err != nil {
		t.Fatal(err)
	}
	noToken, _ := apiclient.NewClientWithResponses(g.url)
	if r, err := noToken.EventServiceGetWithResponse(ctx, apiclient.GetEventRequest{ChannelId: channelID, Password: "secret-123", EventId: eventID}); err != nil ||
		r.JSON401 == nil || r.JSON401.ErrorCode != apiclient.AuthenticationFailed {
		t.Fatalf("without the token: %v %s", err, r.Body)
	}
}
