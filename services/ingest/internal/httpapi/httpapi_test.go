package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/auth"
	"pushgo.dev/gateway/services/ingest/internal/grpcapi"
	"pushgo.dev/gateway/services/ingest/internal/httpapi"
)

// fakeEvents answers Create with whatever its function returns.
type fakeEvents struct {
	apiv1.UnimplementedEventServiceServer
	create func(*apiv1.EventRequest) (*apiv1.EventOpResult, error)
}

func (f *fakeEvents) Create(_ context.Context, req *apiv1.EventRequest) (*apiv1.EventOpResult, error) {
	return f.create(req)
}

func serve(t *testing.T, create func(*apiv1.EventRequest) (*apiv1.EventOpResult, error)) *httptest.Server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	inline := grpcapi.NewInline(grpcapi.Interceptor(auth.NewToken(""), nil, log))
	apiv1.RegisterEventServiceServer(inline, &fakeEvents{create: create})
	apiv1.RegisterChannelServiceServer(inline, &apiv1.UnimplementedChannelServiceServer{})
	h, err := httpapi.New(t.Context(), inline, httpapi.Options{Logger: log, Ready: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, srv *httptest.Server, body string) (int, map[string]json.RawMessage) {
	t.Helper()
	resp, err := http.Post(srv.URL+"/event/create", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env map[string]json.RawMessage
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("not JSON: %q", raw)
	}
	return resp.StatusCode, env
}

func TestPanicIsInternalError(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(*apiv1.EventRequest) (*apiv1.EventOpResult, error) { panic("secret detail") })
	status, env := post(t, srv, `{"channel_id":"x"}`)
	if status != http.StatusInternalServerError || string(env["error_code"]) != `"internal_error"` || strings.Contains(string(env["error"]), "secret") {
		t.Fatalf("got %d %v", status, env)
	}
}

func TestUnexpectedErrorIsInternalError(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(*apiv1.EventRequest) (*apiv1.EventOpResult, error) { return nil, io.ErrUnexpectedEOF })
	status, env := post(t, srv, `{}`)
	if status != http.StatusInternalServerError || string(env["error_code"]) != `"internal_error"` || string(env["error"]) != `"internal error"` {
		t.Fatalf("got %d %v", status, env)
	}
}

func TestPartialFailureEnvelope(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(*apiv1.EventRequest) (*apiv1.EventOpResult, error) {
		e := apierr.New("dispatch_partial_failure", "1 of 2 targets did not receive the push")
		e.Data = &apiv1.EventOpResult{ChannelId: "C", OpId: "o", EventId: "e", Applied: true, Version: 2, EventState: "ONGOING",
			Delivery: &apiv1.Delivery{Targets: 2, Delivered: 1, Failed: 1}}
		return nil, e
	})
	status, env := post(t, srv, `{}`)
	want := `{"channel_id":"C","op_id":"o","event_id":"e","thing_id":null,"accepted":false,"applied":true,"version":2,"event_state":"ONGOING","delivery":{"targets":2,"delivered":1,"failed":1}}`
	if status != http.StatusServiceUnavailable || string(env["error_code"]) != `"dispatch_partial_failure"` || string(env["data"]) != want || string(env["success"]) != "false" {
		t.Fatalf("got %d %v", status, env)
	}
}

func TestSuccessEnvelopeAndDecoding(t *testing.T) {
	t.Parallel()
	var got *apiv1.EventRequest
	srv := serve(t, func(req *apiv1.EventRequest) (*apiv1.EventOpResult, error) {
		got = req
		return &apiv1.EventOpResult{ChannelId: "C", Delivery: &apiv1.Delivery{}}, nil
	})
	status, env := post(t, srv, `{"channel_id":"C","op_id":"","attrs":{"a":null,"b":{"c":1}},"event_time":"17"}`)
	if status != http.StatusOK || string(env["success"]) != "true" || string(env["error"]) != "null" || string(env["error_code"]) != "null" {
		t.Fatalf("got %d %v", status, env)
	}
	if got.GetChannelId() != "C" || got.OpId == nil || got.GetEventTime().GetStringValue() != "17" ||
		got.GetAttrs().GetFields()["a"].GetKind() == nil || got.GetAttrs().GetFields()["b"].GetStructValue().GetFields()["c"].GetNumberValue() != 1 {
		t.Fatalf("the handler got %v", got)
	}
}
