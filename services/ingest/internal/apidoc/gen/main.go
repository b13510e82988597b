// Command gen writes the gateway's OpenAPI 3 description (openapi.json) and its reference page
// (docs.html) for package apidoc, which serves them at /openapi.json and /docs. Its sources:
//
//   - the API's proto descriptors: routes (google.api.http), fields with their real snake_case
//     names, types and presence (an unset optional field is null in every answer);
//   - the Swagger 2 file protoc-gen-openapiv2 writes from the same protos, for the comments,
//     which compiled descriptors do not keep;
//   - apierr.Codes, for the HTTP status of every error_code;
//   - the tables in tables.go: the required fields and the error codes of each route.
//
// `make gen` runs it after buf generate; `make gen-check` proves its output current. The
// end-to-end suite checks that every (route, error_code) a test receives is in the spec.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"html/template"
	"log"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

type obj = map[string]any

func main() {
	swaggerFile := flag.String("swagger", "../../proto/openapi/pushgo.swagger.json", "the Swagger 2 file protoc-gen-openapiv2 wrote")
	out := flag.String("out", "internal/apidoc", "directory of openapi.json and docs.html")
	flag.Parse()
	b, err := os.ReadFile(*swaggerFile)
	if err != nil {
		log.Fatal(err)
	}
	var sw swagger
	if err := json.Unmarshal(b, &sw); err != nil {
		log.Fatalf("%s: %v", *swaggerFile, err)
	}
	g := &generator{sw: sw, schemas: obj{}}
	spec := g.spec()
	js, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "openapi.json"), append(js, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	page, err := g.page()
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "docs.html"), page, 0o644); err != nil {
		log.Fatal(err)
	}
}

// swagger is what the generator reads of protoc-gen-openapiv2's output: descriptions.
type swagger struct {
	Paths map[string]map[string]struct {
		Summary     string `json:"summary"`
		Description string `json:"description"`
		OperationID string `json:"operationId"`
	} `json:"paths"`
	Definitions map[string]struct {
		Title       string `json:"title"`
		Description string `json:"description"`
		Properties  map[string]struct {
			Title       string `json:"title"`
			Description string `json:"description"`
		} `json:"properties"`
	} `json:"definitions"`
}

type generator struct {
	sw      swagger
	schemas obj
	// ops are the operations in path order, for the page.
	ops []operation
}

// operation is one route, as the page shows it.
type operation struct {
	Method, Path, Summary, Description string
	Request                            string // schema name, "" for none
	Response                           string
	Errors                             map[int][]string
	Security                           string
}

var services = []protoreflect.ServiceDescriptor{
	apiv1.File_pushgo_api_v1_event_proto.Services().ByName("EventService"),
	apiv1.File_pushgo_api_v1_channel_proto.Services().ByName("ChannelService"),
	apiv1.File_pushgo_api_v1_device_proto.Services().ByName("DeviceService"),
	apiv1.File_pushgo_api_v1_device_proto.Services().ByName("MessageService"),
	apiv1.File_pushgo_api_v1_activity_proto.Services().ByName("ActivityService"),
	apiv1.File_pushgo_api_v1_tenant_proto.Services().ByName("TenantService"),
}

func (g *generator) spec() obj {
	paths := obj{}
	for _, sd := range services {
		methods := sd.Methods()
		for i := range methods.Len() {
			md := methods.Get(i)
			rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
			path := rule.GetPost()
			if path == "" {
				log.Fatalf("%s has no POST route", md.FullName())
			}
			paths[path] = obj{"post": g.rpc(sd, md, path)}
		}
	}
	g.extraRoutes(paths)
	g.schemas["ErrorCode"] = obj{"type": "string", "enum": slices.Sorted(maps.Keys(apierr.Codes)),
		"description": "Every error_code; each response lists those its route answers with that status (x-error-codes)."}
	envelope := func(desc string, data obj) obj {
		return obj{
			"type": "object", "description": desc,
			"required": []string{"success", "data", "error", "error_code"},
			"properties": obj{
				"success":    obj{"type": "boolean", "enum": []bool{false}},
				"data":       data,
				"error":      obj{"type": "string", "description": "what went wrong, in words"},
				"error_code": ref("ErrorCode"),
			},
		}
	}
	g.schemas["Error"] = envelope("The envelope of an error answer: success false, the error in words and its stable error_code; data null.",
		obj{"type": "object", "nullable": true})
	g.schemas["OpError"] = envelope("The envelope of an op's 503: with dispatch_partial_failure and dispatch_timeout, data is the op's outcome so far "+
		"(repeat the op_id for the final one); null with the other codes.", obj{"allOf": []obj{ref("EventOpResult")}, "nullable": true})
	return obj{
		"openapi": "3.0.3",
		"info": obj{
			"title":   "PushGo Event Gateway",
			"version": "1",
			"description": "The Event API and the device API of the PushGo Event Gateway. Every answer is an envelope " +
				"{success, data, error, error_code} with an X-Request-Id header; data is the route's result on success. " +
				"Field names are the snake_case names of the protos; an unset optional field is null. With a gateway token " +
				"every route but /healthz and /readyz takes Authorization: Bearer <token>; in hosted mode (--admin-token) " +
				"the admin routes take the admin token, the device-keyed routes nothing, the others a tenant's API key.",
		},
		"servers":    []obj{{"url": "/"}},
		"security":   []obj{{"bearer": []string{}}},
		"paths":      paths,
		"components": obj{"schemas": g.schemas, "securitySchemes": obj{"bearer": obj{"type": "http", "scheme": "bearer", "description": "the gateway token (--token), a tenant's API key, or the admin token on /admin/*"}}},
	}
}

// rpc is the operation of one method's POST route.
func (g *generator) rpc(sd protoreflect.ServiceDescriptor, md protoreflect.MethodDescriptor, path string) obj {
	sop := g.sw.Paths[path]["post"]
	in, out := string(md.Input().Name()), string(md.Output().Name())
	g.message(md.Output(), true)
	req := in
	if variant, ok := requestVariants[path]; ok {
		req = variant
		g.requestVariant(md.Input(), variant, path)
	} else {
		g.message(md.Input(), false)
		g.require(in, path)
	}
	op := obj{
		"operationId": sop.OperationID,
		"summary":     summary(sop.Summary),
		"description": strings.TrimSpace(sop.Summary + "\n\n" + sop.Description),
		"tags":        []string{string(sd.Name())},
		"requestBody": obj{"required": true, "content": obj{"application/json": obj{"schema": ref(req)}}},
		"responses":   g.responses(path, out),
	}
	if strings.HasPrefix(path, "/admin/") {
		op["description"] = op["description"].(string) + "\n\nHosted mode only (--admin-token); takes the admin token."
	}
	security := "the gateway token, or in hosted mode a tenant's API key"
	switch {
	case strings.HasPrefix(path, "/admin/"):
		security = "the admin token"
	case strings.HasPrefix(path, "/messages/") || strings.HasPrefix(path, "/activity/"):
		security = "the gateway token; in hosted mode none (the device key is the credential)"
	}
	g.ops = append(g.ops, operation{Method: "POST", Path: path, Summary: summary(sop.Summary), Description: op["description"].(string),
		Request: req, Response: out, Errors: errorsOf(path), Security: security})
	return op
}

// summary is the first sentence of a comment.
func summary(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i > 0 {
		return s[:i+1]
	}
	return s
}

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

// responses are a route's answers: 200 with data, and per HTTP status the error codes it may
// answer.
func (g *generator) responses(path, out string) obj {
	rs := obj{"200": obj{
		"description": "success: data is the route's result",
		"content": obj{"application/json": obj{"schema": obj{
			"type":     "object",
			"required": []string{"success", "data", "error", "error_code"},
			"properties": obj{
				"success":    obj{"type": "boolean", "enum": []bool{true}},
				"data":       ref(out),
				"error":      obj{"type": "string", "nullable": true},
				"error_code": obj{"type": "string", "nullable": true},
			},
		}}},
	}}
	for status, codes := range errorsOf(path) {
		rs[strconv.Itoa(status)] = errorResponse(status, codes)
	}
	return rs
}

// errorResponse is the answer of status with one of codes: the Error envelope (OpError where
// dispatch's codes carry the op's outcome), the codes listed in the description and in
// x-error-codes.
func errorResponse(status int, codes []string) obj {
	schema := "Error"
	if slices.ContainsFunc(codes, func(c string) bool { return strings.HasPrefix(c, "dispatch_") }) {
		schema = "OpError"
	}
	r := obj{
		"description":   http.StatusText(status) + "; error_code one of: " + strings.Join(codes, ", "),
		"x-error-codes": codes,
		"content":       obj{"application/json": obj{"schema": ref(schema)}},
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		r["headers"] = obj{"Retry-After": obj{"description": "seconds to wait before trying again", "schema": obj{"type": "integer"}}}
	}
	return r
}

// errorsOf groups the error codes of route path by HTTP status.
func errorsOf(path string) map[int][]string {
	codes := slices.Concat(commonErrors, routeErrors[path])
	if strings.HasPrefix(path, "/event/") || strings.HasPrefix(path, "/channel/") || strings.HasPrefix(path, "/device/") ||
		strings.HasPrefix(path, "/messages/") || strings.HasPrefix(path, "/activity/") {
		codes = append(codes, hostedErrors...)
	}
	out := map[int][]string{}
	for _, c := range codes {
		info, ok := apierr.Codes[c]
		if !ok {
			log.Fatalf("route %s: unknown error code %q", path, c)
		}
		if !slices.Contains(out[info.Status], c) {
			out[info.Status] = append(out[info.Status], c)
		}
	}
	for s := range out {
		slices.Sort(out[s])
	}
	return out
}

// message adds the schema of md (and of the messages its fields use) to the components.
// answer marks every field required: answers always carry every field (null when unset).
func (g *generator) message(md protoreflect.MessageDescriptor, answer bool) {
	name := string(md.Name())
	if _, done := g.schemas[name]; done {
		return
	}
	g.schemas[name] = obj{} // placeholder against recursion
	props, desc := g.properties(md)
	s := obj{"type": "object", "properties": props}
	if desc != "" {
		s["description"] = desc
	}
	if answer {
		s["required"] = slices.Sorted(maps.Keys(props))
	}
	g.schemas[name] = s
	fields := md.Fields()
	for i := range fields.Len() {
		if m := fields.Get(i).Message(); m != nil && !wellKnown(m) && !fields.Get(i).IsMap() {
			g.message(m, answer)
		}
	}
}

// requestVariant adds the schema of one route's own version of a request shared by several
// routes (EventRequest): the fields the route forbids left out, its required ones marked.
func (g *generator) requestVariant(md protoreflect.MessageDescriptor, name, path string) {
	props, desc := g.properties(md)
	for _, f := range forbidden[path] {
		delete(props, f)
	}
	g.schemas[name] = obj{"type": "object", "properties": props, "description": desc}
	g.require(name, path)
}

// require marks the required fields of route path's request schema name.
func (g *generator) require(name, path string) {
	if req := required[path]; len(req) > 0 {
		g.schemas[name].(obj)["required"] = req
	}
}

func wellKnown(m protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(m.FullName()), "google.protobuf.")
}

// properties are the schemas of md's fields, and md's description.
func (g *generator) properties(md protoreflect.MessageDescriptor) (obj, string) {
	def := g.sw.Definitions["v1"+string(md.Name())]
	if def.Properties == nil {
		def = g.sw.Definitions["pushgoApiV1"+string(md.Name())]
	}
	props := obj{}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		s := fieldSchema(fd)
		if p := def.Properties[string(fd.Name())]; p.Title != "" || p.Description != "" {
			s["description"] = strings.TrimSpace(p.Title + "\n" + p.Description)
		}
		if fd.HasPresence() {
			if r, ok := s["$ref"]; ok {
				s = obj{"allOf": []obj{{"$ref": r}}, "nullable": true}
			} else {
				s["nullable"] = true
			}
		}
		props[string(fd.Name())] = s
	}
	return props, strings.TrimSpace(def.Title + "\n" + def.Description)
}

// fieldSchema is the JSON form of one field as the API writes and reads it (httpapi's
// conventions: 64-bit integers are numbers, Struct, Value and ListValue plain JSON).
func fieldSchema(fd protoreflect.FieldDescriptor) obj {
	if fd.IsMap() {
		return obj{"type": "object", "additionalProperties": fieldSchema(fd.MapValue())}
	}
	if fd.IsList() {
		return obj{"type": "array", "items": scalarSchema(fd)}
	}
	return scalarSchema(fd)
}

func scalarSchema(fd protoreflect.FieldDescriptor) obj {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return obj{"type": "string"}
	case protoreflect.BoolKind:
		return obj{"type": "boolean"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return obj{"type": "integer", "format": "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return obj{"type": "integer", "format": "int64", "minimum": 0}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return obj{"type": "integer", "format": "int64"}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return obj{"type": "number"}
	case protoreflect.EnumKind:
		var names []string
		vals := fd.Enum().Values()
		for i := range vals.Len() {
			names = append(names, string(vals.Get(i).Name()))
		}
		return obj{"type": "string", "enum": names}
	case protoreflect.BytesKind:
		return obj{"type": "string", "format": "byte"}
	case protoreflect.MessageKind, protoreflect.GroupKind:
	}
	switch fd.Message().FullName() {
	case "google.protobuf.Struct":
		return obj{"type": "object", "additionalProperties": true}
	case "google.protobuf.ListValue":
		return obj{"type": "array", "items": obj{"type": "string"}}
	case "google.protobuf.Value":
		// The times of a request: Unix seconds or milliseconds, as a number or a string of
		// digits; a generated client sends the number.
		return obj{"type": "integer", "format": "int64", "description": "Unix seconds or milliseconds (≥ 10^12 is milliseconds); a string of digits is accepted too"}
	}
	return ref(string(fd.Message().Name()))
}

// extraRoutes adds the routes that are not RPCs: the live streams, health, metrics and these
// documents.
func (g *generator) extraRoutes(paths obj) {
	g.message(apiv1.File_pushgo_api_v1_device_proto.Messages().ByName("InboxItem"), true)
	deviceKey := obj{"name": "device_key", "in": "query", "required": true, "schema": obj{"type": "string"}, "description": "the device's key (32 hex)"}
	afterSeq := obj{"name": "after_seq", "in": "query", "schema": obj{"type": "integer", "format": "int64"}, "description": "resume after this inbox position (the seq of the last item seen)"}
	lastEventID := obj{"name": "last_event_id", "in": "query", "schema": obj{"type": "integer", "format": "int64"}, "description": "as the Last-Event-ID header: resume after this inbox position"}
	auth := obj{"name": "auth", "in": "query", "schema": obj{"type": "string"}, "description": "the gateway token, for EventSource and WebSocket clients, which cannot send Authorization"}
	streamErrors := func() obj {
		rs := obj{}
		for status, codes := range errorsOf("/device/stream") {
			rs[strconv.Itoa(status)] = errorResponse(status, codes)
		}
		return rs
	}
	sse := streamErrors()
	sse["200"] = obj{"description": "an SSE stream: each inbox item as `id: <seq>`, `event: message`, `data: <InboxItem JSON>`; a keep-alive comment every 15 s; `event: error` with {\"error_code\"} before the server ends it",
		"content": obj{"text/event-stream": obj{"schema": obj{"type": "string"}}}}
	ws := streamErrors()
	ws["101"] = obj{"description": "a WebSocket: frames {\"type\":\"message\",\"delivery_id\",\"seq\",\"payload\"}; send {\"type\":\"ack\",\"delivery_id\"} to remove an item (answered {\"type\":\"acked\",\"delivery_id\",\"removed\"}) and {\"type\":\"ping\"} (answered pong)"}
	paths["/device/stream"] = obj{"get": obj{"operationId": "DeviceStream", "tags": []string{"MessageService"},
		"summary":     "Follow a device's inbox live (Server-Sent Events).",
		"description": "Sends the inbox's items after Last-Event-ID (or last_event_id; all of them without), then each new one as it arrives. Items stay until acknowledged (/messages/ack).",
		"parameters":  []obj{deviceKey, lastEventID, auth, {"name": "Last-Event-ID", "in": "header", "schema": obj{"type": "string"}, "description": "the id of the last item seen (EventSource sends it when it reconnects)"}},
		"responses":   sse}}
	paths["/device/ws"] = obj{"get": obj{"operationId": "DeviceWebSocket", "tags": []string{"MessageService"},
		"summary":    "Follow a device's inbox live over a WebSocket, and acknowledge items on it.",
		"parameters": []obj{deviceKey, afterSeq, auth}, "responses": ws}}
	health := func(id, summary string, ready bool) obj {
		rs := obj{"200": obj{"description": "ok: {\"success\":true,\"data\":{\"status\":\"ok\"},…}",
			"content": obj{"application/json": obj{"schema": obj{"type": "object", "properties": obj{"success": obj{"type": "boolean"},
				"data": obj{"type": "object", "properties": obj{"status": obj{"type": "string"}}}}}}}}}
		rs["405"] = errorResponse(http.StatusMethodNotAllowed, []string{"method_not_allowed"})
		if ready {
			rs["503"] = errorResponse(http.StatusServiceUnavailable, []string{"unavailable"})
		}
		return obj{"get": obj{"operationId": id, "tags": []string{"Health"}, "summary": summary, "security": []obj{}, "responses": rs}}
	}
	paths["/healthz"] = health("Healthz", "Liveness: the process answers.", false)
	paths["/readyz"] = health("Readyz", "Readiness: NATS reachable and the streams present.", true)
	paths["/metrics"] = obj{"get": obj{"operationId": "Metrics", "tags": []string{"Operations"},
		"summary":     "Prometheus metrics (text format).",
		"description": "Behind the gateway token (the admin token in hosted mode); not here when --metrics-addr serves them elsewhere.",
		"responses": obj{"200": obj{"description": "the Prometheus text format", "content": obj{"text/plain": obj{"schema": obj{"type": "string"}}}},
			"401": errorResponse(http.StatusUnauthorized, []string{"authentication_failed"}),
			"404": errorResponse(http.StatusNotFound, []string{"route_not_found"})}}}
	paths["/openapi.json"] = obj{"get": obj{"operationId": "OpenAPI", "tags": []string{"Operations"}, "summary": "This description.", "security": []obj{},
		"responses": obj{"200": obj{"description": "OpenAPI 3", "content": obj{"application/json": obj{"schema": obj{"type": "object"}}}}}}}
	paths["/docs"] = obj{"get": obj{"operationId": "Docs", "tags": []string{"Operations"}, "summary": "The API reference as a web page (works offline).", "security": []obj{},
		"responses": obj{"200": obj{"description": "HTML", "content": obj{"text/html": obj{"schema": obj{"type": "string"}}}}}}}
	for _, p := range []struct{ method, path, summary string }{
		{"GET", "/device/stream", "Follow a device's inbox live (Server-Sent Events); ?auth= takes the token."},
		{"GET", "/device/ws", "Follow a device's inbox over a WebSocket; ?auth= takes the token."},
		{"GET", "/healthz", "Liveness (no token)."},
		{"GET", "/readyz", "Readiness (no token)."},
		{"GET", "/metrics", "Prometheus metrics."},
		{"GET", "/openapi.json", "This API's OpenAPI 3 description (no token)."},
		{"GET", "/docs", "This page (no token)."},
	} {
		op := operation{Method: p.method, Path: p.path, Summary: p.summary}
		if strings.HasPrefix(p.path, "/device/") {
			op.Errors = errorsOf(p.path)
		}
		g.ops = append(g.ops, op)
	}
}

// page renders the reference page from the operations and schemas.
func (g *generator) page() ([]byte, error) {
	slices.SortStableFunc(g.ops, func(a, b operation) int { return strings.Compare(a.Path, b.Path) })
	type field struct {
		Name, Type, Description string
		Required, Nullable      bool
	}
	type schema struct {
		Name, Description string
		Fields            []field
	}
	var schemas []schema
	for _, name := range slices.Sorted(maps.Keys(g.schemas)) {
		s := g.schemas[name].(obj)
		props, _ := s["properties"].(obj)
		req, _ := s["required"].([]string)
		sc := schema{Name: name}
		sc.Description, _ = s["description"].(string)
		for _, p := range slices.Sorted(maps.Keys(props)) {
			ps := props[p].(obj)
			f := field{Name: p, Type: typeName(ps), Required: slices.Contains(req, p)}
			f.Description, _ = ps["description"].(string)
			f.Nullable, _ = ps["nullable"].(bool)
			sc.Fields = append(sc.Fields, f)
		}
		schemas = append(schemas, sc)
	}
	var buf bytes.Buffer
	err := pageTemplate.Execute(&buf, struct {
		Ops     []operation
		Schemas []schema
	}{g.ops, schemas})
	return buf.Bytes(), err
}

// typeName is a schema's type as the page shows it.
func typeName(s obj) string {
	if r, ok := s["$ref"].(string); ok {
		return strings.TrimPrefix(r, "#/components/schemas/")
	}
	if all, ok := s["allOf"].([]obj); ok && len(all) == 1 {
		return typeName(all[0])
	}
	t, _ := s["type"].(string)
	switch t {
	case "array":
		return "array of " + typeName(s["items"].(obj))
	case "object":
		if ap, ok := s["additionalProperties"].(obj); ok {
			return "object of " + typeName(ap)
		}
	case "integer":
		return "integer"
	}
	if e, ok := s["enum"].([]string); ok {
		return t + " (" + strings.Join(e, ", ") + ")"
	}
	return t
}

var pageTemplate = template.Must(template.New("docs").Funcs(template.FuncMap{
	"statuses": func(m map[int][]string) []int { return slices.Sorted(maps.Keys(m)) },
	"join":     func(s []string) string { return strings.Join(s, ", ") },
	"anchor":   func(s string) string { return "schema-" + s },
	"isSchema": func(s string) bool { return s != "" && !strings.Contains(s, " ") },
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>PushGo Event Gateway API</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; color: #222; }
code, td.t { font-family: ui-monospace, monospace; font-size: 13px; }
h2 { border-bottom: 1px solid #ddd; padding-top: 1em; }
h3 code { background: #eef; padding: 2px 6px; border-radius: 3px; }
table { border-collapse: collapse; margin: .5em 0; width: 100%; }
td, th { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
.m { color: #fff; background: #36c; padding: 1px 6px; border-radius: 3px; font-size: 12px; }
.muted { color: #666; }
</style>
</head>
<body>
<h1>PushGo Event Gateway API</h1>
<p>Every answer is an envelope <code>{"success", "data", "error", "error_code"}</code> with an
<code>X-Request-Id</code> header; <code>data</code> is the route's result on success. Requests are
<code>POST</code> with a JSON body (<code>Content-Type: application/json</code>); unknown fields are refused
(<code>unknown_field</code>). With a gateway token every route but <code>/healthz</code>, <code>/readyz</code>,
<code>/openapi.json</code> and <code>/docs</code> takes <code>Authorization: Bearer &lt;token&gt;</code>. The
machine-readable description is at <a href="openapi.json"><code>/openapi.json</code></a> (OpenAPI 3).</p>
<h2>Routes</h2>
<ul>{{range .Ops}}<li><a href="#{{.Path}}"><code>{{.Method}} {{.Path}}</code></a> — {{.Summary}}</li>{{end}}</ul>
{{range .Ops}}
<h3 id="{{.Path}}"><span class="m">{{.Method}}</span> <code>{{.Path}}</code></h3>
{{if .Description}}<p>{{.Description}}</p>{{else}}<p>{{.Summary}}</p>{{end}}
{{if .Security}}<p class="muted">Credential: {{.Security}}.</p>{{end}}
{{if isSchema .Request}}<p>Request: <a href="#{{anchor .Request}}"><code>{{.Request}}</code></a>. Answer data: <a href="#{{anchor .Response}}"><code>{{.Response}}</code></a>.</p>{{end}}
{{if .Errors}}<table><tr><th>HTTP</th><th>error_code</th></tr>
{{$e := .Errors}}{{range statuses .Errors}}<tr><td>{{.}}</td><td class="t">{{index $e . | join}}</td></tr>
{{end}}</table>{{end}}
{{end}}
<h2>Schemas</h2>
{{range .Schemas}}
<h3 id="{{anchor .Name}}"><code>{{.Name}}</code></h3>
{{if .Description}}<p>{{.Description}}</p>{{end}}
{{if .Fields}}<table><tr><th>field</th><th>type</th><th></th><th>description</th></tr>
{{range .Fields}}<tr><td class="t">{{.Name}}</td><td class="t">{{.Type}}</td><td>{{if .Required}}required{{end}}{{if .Nullable}} nullable{{end}}</td><td>{{.Description}}</td></tr>
{{end}}</table>{{end}}
{{end}}
</body>
</html>
`))
