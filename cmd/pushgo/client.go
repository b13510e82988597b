package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// The CLI client (DESIGN.md §11): `pushgo event|channel|device|listen|version`, a client of a
// running gateway's HTTP API, as `ntfy pub` and `ntfy sub` are of ntfy.

const clientUsage = `pushgo — a client of a running gateway's HTTP API

Usage:
  pushgo event create|update|close [field flags] [-]
  pushgo event get|history --event-id <id>
  pushgo event list [--event-state ONGOING|CLOSED] [--limit N] [--cursor C]
  pushgo channel create --name <name>
  pushgo device register --platform <platform> [--device-key <key>]
  pushgo device subscribe --device-key <key>
  pushgo listen --device-key <key> [--json] [--after-seq N]
  pushgo version

Field flags (create, update, close) are the API's names: --title, --description, --status,
--message, --severity, --event-id, --op-id, --thing-id, --event-time (Unix s or ms, or
RFC 3339; default now), --attr key=value (repeated; a value that is JSON is sent as such),
--tag (repeated). A trailing - reads a JSON body from stdin; flags given override its keys.

Every command takes --url (PUSHGO_URL, default http://127.0.0.1:6666) and --token
(PUSHGO_TOKEN); event and channel commands --channel-id (PUSHGO_CHANNEL_ID) and --password
(PUSHGO_PASSWORD). The answer's data is printed on stdout as JSON; an error envelope goes to
stderr with exit status 1 for a 4xx answer and 2 for a 5xx answer or none.

pushgo listen follows the device's stream (SSE), prints one line per push (the payload as
JSON with --json), reconnects and resumes after the last push it printed, and exits 0 on
SIGINT. The pushes stay in the device's inbox (pull and ack them with the API).
`

// version is the build's version, set with -ldflags "-X main.version=…" (make build and the
// images); "dev" otherwise.
var version = "dev"

// clientCommand runs `pushgo <group> [command] [flags]` and returns the exit status.
func clientCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	group := args[0]
	if group == "version" {
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	cmd := group
	rest := args[1:]
	if group == "event" || group == "channel" || group == "device" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprint(stderr, clientUsage)
			return 2
		}
		cmd, rest = group+" "+rest[0], rest[1:]
	}
	fs := flag.NewFlagSet("pushgo "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string { return envOr(getenv, name, def) }
	c := &client{stdout: stdout, stderr: stderr, name: "pushgo " + cmd}
	fs.StringVar(&c.url, "url", env("PUSHGO_URL", "http://127.0.0.1:6666"), "the gateway's HTTP API")
	fs.StringVar(&c.token, "token", env("PUSHGO_TOKEN", ""), "the gateway token (or a tenant's API key)")
	body := map[string]any{}
	str := func(field, help string) {
		fs.Func(strings.ReplaceAll(field, "_", "-"), help, func(v string) error { body[field] = v; return nil })
	}
	channel := func() {
		body["channel_id"], body["password"] = getenv("PUSHGO_CHANNEL_ID"), getenv("PUSHGO_PASSWORD")
		str("channel_id", "the channel (PUSHGO_CHANNEL_ID)")
		str("password", "the channel's password (PUSHGO_PASSWORD)")
	}
	var attrs, tags []string
	var asJSON bool
	var afterSeq uint64
	route := ""
	switch cmd {
	case "event create", "event update", "event close":
		channel()
		for _, f := range []string{"title", "description", "status", "message", "severity", "event_id", "op_id", "thing_id"} {
			str(f, "the request's "+f)
		}
		fs.Func("event-time", "Unix seconds or ms, or RFC 3339 (default now)", func(v string) error {
			t, err := eventTime(v)
			body["event_time"] = t
			return err
		})
		fs.Func("attr", "key=value of attrs (repeated; a JSON value is sent as such)", func(v string) error { attrs = append(attrs, v); return nil })
		fs.Func("tag", "a tag (repeated)", func(v string) error { tags = append(tags, v); return nil })
		route = "/event/" + strings.TrimPrefix(cmd, "event ")
	case "event get", "event history":
		channel()
		str("event_id", "the event")
		route = "/event/" + strings.TrimPrefix(cmd, "event ")
	case "event list":
		channel()
		str("event_state", "ONGOING or CLOSED (default both)")
		str("cursor", "next_cursor of the page before")
		fs.Func("limit", "events per page", func(v string) error {
			n, err := strconv.Atoi(v)
			body["limit"] = n
			return err
		})
		route = "/event/list"
	case "channel create":
		body["password"] = getenv("PUSHGO_PASSWORD")
		fs.Func("name", "the channel's name", func(v string) error { body["channel_name"] = v; return nil })
		str("password", "the channel's password (PUSHGO_PASSWORD)")
		route = "/channel/create"
	case "device register":
		str("platform", "ios, android, macos, web, server, …")
		str("device_key", "a key issued before, to confirm it")
		route = "/device/register"
	case "device subscribe":
		channel()
		str("device_key", "the device")
		route = "/channel/subscribe"
	case "listen":
		str("device_key", "the device whose pushes to follow")
		fs.BoolVar(&asJSON, "json", false, "print each push's payload as one line of JSON")
		fs.Uint64Var(&afterSeq, "after-seq", 0, "start after this inbox position, the id of a push printed before (default: every push in the inbox)")
	default:
		fmt.Fprint(stderr, clientUsage)
		fmt.Fprintf(stderr, "pushgo: unknown command %q\n", cmd)
		return 2
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	args = fs.Args()
	if len(args) == 1 && args[0] == "-" && route != "" {
		var in map[string]any
		if err := json.NewDecoder(stdin).Decode(&in); err != nil {
			fmt.Fprintf(stderr, "%s: the body on stdin is not a JSON object: %v\n", c.name, err)
			return 2
		}
		for k, v := range body { // flags win over stdin, environment defaults do not
			if s, ok := v.(string); !ok || s != "" || in[k] == nil {
				in[k] = v
			}
		}
		body, args = in, nil
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments: %v\n", c.name, args)
		return 2
	}
	for k, v := range body { // an environment default left empty is not sent
		if s, ok := v.(string); ok && s == "" {
			delete(body, k)
		}
	}
	if strings.HasPrefix(cmd, "event c") || strings.HasPrefix(cmd, "event u") {
		if _, ok := body["event_time"]; !ok {
			body["event_time"] = time.Now().UnixMilli()
		}
		if err := addAttrs(body, attrs); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", c.name, err)
			return 2
		}
		if len(tags) > 0 {
			body["tags"] = tags
		}
	}
	if cmd == "listen" {
		key, _ := body["device_key"].(string)
		if key == "" {
			fmt.Fprintln(stderr, "pushgo listen: --device-key is required")
			return 2
		}
		return c.listen(ctx, key, afterSeq, asJSON)
	}
	return c.call(ctx, route, body)
}

// envOr is the environment variable name, or def when it is empty.
func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// versionLine is what `pushgo version` prints: the version, the commit when the build knows
// it, and the Go version.
func versionLine() string {
	v, rev := version, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		if rev != "" {
			v += " (" + rev + ")"
		}
		return "pushgo " + v + " " + bi.GoVersion
	}
	return "pushgo " + v
}

// eventTime turns --event-time into what the API takes: the digits as given (Unix s or ms),
// or an RFC 3339 time in Unix ms.
func eventTime(v string) (any, error) {
	if _, err := strconv.ParseUint(v, 10, 64); err == nil {
		return v, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, fmt.Errorf("%q is neither Unix seconds or ms nor an RFC 3339 time", v)
	}
	return t.UnixMilli(), nil
}

// addAttrs adds --attr key=value pairs to body's attrs: a value that is valid JSON is sent as
// that JSON value (42, true, null, {"a":1}), anything else as a string.
func addAttrs(body map[string]any, pairs []string) error {
	if len(pairs) == 0 {
		return nil
	}
	attrs, _ := body["attrs"].(map[string]any)
	if attrs == nil {
		attrs = map[string]any{}
	}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return fmt.Errorf("--attr %q is not key=value", p)
		}
		var j any
		if err := json.Unmarshal([]byte(v), &j); err == nil {
			attrs[k] = j
		} else {
			attrs[k] = v
		}
	}
	body["attrs"] = attrs
	return nil
}

// client calls one gateway.
type client struct {
	url, token     string
	name           string
	stdout, stderr io.Writer
}

func (c *client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.url, "/")+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", "pushgo-cli/"+version)
	return req, nil
}

// call posts body to route and prints the answer: data on stdout (exit 0), the error envelope
// on stderr (exit 1 for 4xx, 2 for 5xx or no answer).
func (c *client) call(ctx context.Context, route string, body map[string]any) int {
	b, err := json.Marshal(body)
	if err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := c.request(ctx, http.MethodPost, route, bytes.NewReader(b))
	if err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
		return 2
	}
	name, stdout, stderr := c.name, c.stdout, c.stderr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "%s: no answer: %v\n", name, err)
		return 2
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		fmt.Fprintf(stderr, "%s: reading the answer: %v\n", name, err)
		return 2
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &env) != nil {
		fmt.Fprintln(stderr, strings.TrimSpace(string(raw)))
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return 1
		}
		if resp.StatusCode == http.StatusOK { // not an envelope
			fmt.Fprintf(stderr, "%s: the answer is not a PushGo envelope\n", name)
		}
		return 2
	}
	var out bytes.Buffer
	if err := json.Indent(&out, env.Data, "", "  "); err != nil {
		out.Reset()
		out.Write(env.Data)
	}
	out.WriteByte('\n')
	_, _ = stdout.Write(out.Bytes())
	return 0
}

// Reconnection back-off of listen.
const (
	listenFirstBackoff = 500 * time.Millisecond
	listenMaxBackoff   = 30 * time.Second
)

// listen follows device key's stream until ctx is done (exit 0), printing each push and
// resuming after the last one printed when the stream ends or breaks. A refusal that waiting
// cannot change (4xx but 429) ends it with exit 1.
func (c *client) listen(ctx context.Context, key string, after uint64, asJSON bool) int {
	backoff := listenFirstBackoff
	for {
		n, code, err := c.follow(ctx, key, &after, asJSON)
		if ctx.Err() != nil {
			return 0
		}
		if code >= 400 && code < 500 && code != http.StatusTooManyRequests {
			return 1
		}
		if n > 0 {
			backoff = listenFirstBackoff
		}
		fmt.Fprintf(c.stderr, "pushgo listen: stream ended (%v); reconnecting in %s\n", err, backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0
		case <-t.C:
		}
		backoff = min(2*backoff, listenMaxBackoff)
	}
}

// follow reads one connection of the stream, printing each push and moving after past it; it
// returns the pushes printed, the HTTP status of a refusal, and why the stream ended.
func (c *client) follow(ctx context.Context, key string, after *uint64, asJSON bool) (int, int, error) {
	req, err := c.request(ctx, http.MethodGet, "/device/stream?"+url.Values{"device_key": {key}}.Encode(), nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *after > 0 { // resume after the last push printed, as EventSource does
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*after, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		fmt.Fprintln(c.stderr, strings.TrimSpace(string(raw)))
		return 0, resp.StatusCode, fmt.Errorf("status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	var id, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		case strings.HasPrefix(line, "data:"):
			data = strings.TrimSpace(strings.TrimPrefix(line, "data:"))
		case line == "":
			if data != "" {
				if printPush(c.stdout, data, asJSON) {
					n++
				}
				if seq, err := strconv.ParseUint(id, 10, 64); err == nil && seq > *after {
					*after = seq
				}
			}
			id, data = "", ""
		}
	}
	if err := sc.Err(); err != nil {
		return n, 0, err
	}
	return n, 0, io.EOF
}

// printPush prints one stream message: its payload as JSON (asJSON), or a line a person
// reads. It reports false for a message that is not a push.
func printPush(w io.Writer, data string, asJSON bool) bool {
	var m struct {
		Type    string            `json:"type"`
		Payload map[string]string `json:"payload"`
	}
	if json.Unmarshal([]byte(data), &m) != nil || m.Payload == nil {
		return false
	}
	if asJSON {
		b, _ := json.Marshal(m.Payload)
		fmt.Fprintf(w, "%s\n", b)
		return true
	}
	p := m.Payload
	at := p["sent_at"]
	if ms, err := strconv.ParseInt(at, 10, 64); err == nil {
		at = time.UnixMilli(ms).UTC().Format(time.RFC3339)
	}
	text := p["title"]
	if s := strings.TrimSpace(p["status"]); s != "" {
		text += ": " + s
	}
	if msg := strings.TrimSpace(p["message"]); msg != "" {
		text += " — " + msg
	}
	fmt.Fprintf(w, "%s %s %s %s (event %s, v%s)\n", at, p["event_state"], p["severity"], text, p["event_id"], p["event_version"])
	return true
}
