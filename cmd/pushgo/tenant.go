package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

const tenantUsage = `pushgo tenant — administer the tenants of a hosted gateway (--admin-token) over HTTP

Usage:
  pushgo tenant create --name <name> [limit flags]
  pushgo tenant update --tenant-id <id> [--name <name>] [limit flags]
  pushgo tenant delete --tenant-id <id>
  pushgo tenant list
  pushgo tenant usage --tenant-id <id>

Limit flags (create, update): --ops-per-second, --channels, --devices, --streams,
--subscribers-per-channel; 0 turns that limit off for the tenant, a limit not given follows the
gateway's flag. On update, the limits given replace all the tenant's limits.

Every command takes --url (PUSHGO_URL, default http://127.0.0.1:6666) and --admin-token
(PUSHGO_ADMIN_TOKEN). The answer's data is printed on stdout; an error envelope goes to stderr
with exit status 1 for a 4xx answer and 2 for a 5xx answer or none.
`

// tenantLimitFlags are the limit flags and their JSON names in "limits".
var tenantLimitFlags = []struct{ flag, field, help string }{
	{"ops-per-second", "ops_per_second", "event ops per second of the whole tenant"},
	{"channels", "channels", "channels the tenant may own"},
	{"devices", "devices", "devices the tenant may own"},
	{"streams", "streams", "live SSE and WebSocket streams of the tenant's devices"},
	{"subscribers-per-channel", "subscribers_per_channel", "subscribers of each of the tenant's channels"},
}

// tenantCommand runs `pushgo tenant <command> [flags]` against the admin routes of a running
// gateway and returns the process's exit status.
func tenantCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, tenantUsage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("pushgo tenant "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	url := fs.String("url", env("PUSHGO_URL", "http://127.0.0.1:6666"), "the gateway's HTTP API")
	token := fs.String("admin-token", env("PUSHGO_ADMIN_TOKEN", ""), "the gateway's --admin-token")
	var name, id string
	limits := map[string]*uint{}
	withName := func() { fs.StringVar(&name, "name", "", "the tenant's name") }
	withID := func() { fs.StringVar(&id, "tenant-id", "", "the tenant's id") }
	withLimits := func() {
		for _, l := range tenantLimitFlags {
			limits[l.field] = fs.Uint(l.flag, 0, l.help+" (0: no limit)")
		}
	}
	switch cmd {
	case "create":
		withName()
		withLimits()
	case "update":
		withID()
		withName()
		withLimits()
	case "delete", "usage":
		withID()
	case "list":
	case "help", "-h", "--help":
		fmt.Fprint(stderr, tenantUsage)
		return 0
	default:
		fmt.Fprint(stderr, tenantUsage)
		fmt.Fprintf(stderr, "pushgo tenant: unknown command %q\n", cmd)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pushgo tenant: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	body := map[string]any{}
	if isSet(fs, "name") {
		body["name"] = name
	}
	if isSet(fs, "tenant-id") {
		body["tenant_id"] = id
	}
	given := map[string]any{}
	for _, l := range tenantLimitFlags {
		if isSet(fs, l.flag) {
			given[l.field] = *limits[l.field]
		}
	}
	if len(given) > 0 {
		body["limits"] = given
	}
	return adminCall(ctx, strings.TrimRight(*url, "/")+"/admin/tenant/"+cmd, *token, body, stdout, stderr)
}

// adminCall posts body to an admin route and prints the answer: data on stdout (exit 0), the
// error envelope on stderr (exit 1 for 4xx, 2 for 5xx or no answer).
func adminCall(ctx context.Context, url, token string, body map[string]any, stdout, stderr io.Writer) int {
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		fmt.Fprintln(stderr, "pushgo tenant:", err)
		return 2
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "pushgo tenant: no answer:", err)
		return 2
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		fmt.Fprintln(stderr, "pushgo tenant: reading the answer:", err)
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
			fmt.Fprintln(stderr, "pushgo tenant: the answer is not a PushGo envelope")
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
