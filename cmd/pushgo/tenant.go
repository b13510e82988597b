package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
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
	env := func(name, def string) string { return envOr(getenv, name, def) }
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
	c := &client{url: *url, token: *token, name: "pushgo tenant", stdout: stdout, stderr: stderr}
	return c.call(ctx, "/admin/tenant/"+cmd, body)
}
