package bus_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// The README's permission table is the rendering of bus.Table, between two markers.
func TestReadmePermissionTable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- permissions:begin -->\n", "<!-- permissions:end -->"
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %q … %q block", begin, end)
	}
	if got, want := s[i+len(begin):j], bus.PermissionsMarkdown(); got != want {
		t.Errorf("README.md's permission table is not bus.Table; replace the block with:\n%s", want)
	}
}

// The nats-server configuration rendered for a deployment gives each user its role's row.
func TestServerConfigUsersIsTheTable(t *testing.T) {
	t.Parallel()
	users := []bus.User{{Name: "admin", Password: "a"}}
	for _, r := range bus.Roles {
		users = append(users, bus.User{Name: string(r), Password: "p-" + string(r), Role: r})
	}
	conf, err := bus.ServerConfigUsers(users)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server rejects the rendered configuration: %v\n%s", err, conf)
	}
	if len(opts.Users) != len(users) {
		t.Fatalf("%d users configured, want %d", len(opts.Users), len(users))
	}
	for _, u := range opts.Users {
		if u.Username == "admin" {
			if u.Permissions != nil {
				t.Errorf("admin has permissions %+v, want full access", u.Permissions)
			}
			continue
		}
		p, ok := bus.PermissionsOf(bus.Role(u.Username))
		if !ok || u.Permissions == nil {
			t.Fatalf("user %s: no role or no permissions", u.Username)
		}
		if got := u.Permissions.Publish.Allow; !slices.Equal(got, p.Publish) {
			t.Errorf("%s publish allow = %v, want %v", u.Username, got, p.Publish)
		}
		if got := u.Permissions.Subscribe.Allow; !slices.Equal(got, p.Subscribe) {
			t.Errorf("%s subscribe allow = %v, want %v", u.Username, got, p.Subscribe)
		}
		if got := u.Permissions.Response != nil; got != p.AllowResponses {
			t.Errorf("%s allow_responses = %v, want %v", u.Username, got, p.AllowResponses)
		}
	}
}

// Each service's user cannot do another's writes; each can do its own.
func TestRolesCannotDoOthersWrites(t *testing.T) {
	t.Parallel()
	s := bustest.RunSecured(t)
	admin := bustest.Connect(t, s)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(t.Context(), js, bus.Options{}); err != nil {
		t.Fatal(err)
	}
	conns := map[bus.Role]*nats.Conn{}
	violations := map[bus.Role]*bustest.Violations{}
	for _, r := range bus.Roles {
		conns[r], violations[r] = bustest.ConnectRole(t, s, r)
	}

	// Own writes go through (the control: the denials below are not a broken connection).
	own := []struct {
		role    bus.Role
		subject string
	}{
		{bus.RoleIngest, bus.CommandSubject("ch1", "ev1")},
		{bus.RoleLifecycle, bus.EventSubject("ch1", "ev1")},
		{bus.RoleDispatch, bus.InboxSubject("dev1")},
		{bus.RoleDispatch, bus.OutcomesSubject},
	}
	for _, c := range own {
		rjs, err := jetstream.New(conns[c.role])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rjs.Publish(t.Context(), c.subject, []byte("x")); err != nil {
			t.Errorf("%s cannot publish its own %s: %v", c.role, c.subject, err)
		}
	}
	// Lifecycle and dispatch announce outcomes; ingest hears them.
	heard, err := conns[bus.RoleIngest].SubscribeSync(bus.OutcomeSubjects)
	if err != nil {
		t.Fatal(err)
	}
	if err := conns[bus.RoleIngest].Flush(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []bus.Role{bus.RoleLifecycle, bus.RoleDispatch} {
		subject := bus.OutcomeSubject("ch1", "op-"+string(r))
		if err := conns[r].Publish(subject, []byte("x")); err != nil {
			t.Fatal(err)
		}
		m, err := heard.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("ingest did not hear %s's outcome: %v", r, err)
		}
		if got, want := bus.OpKeyFromOutcomeSubject(m.Subject), bus.OpKey("ch1", "op-"+string(r)); got != want {
			t.Errorf("op key of %s = %q, want %q", m.Subject, got, want)
		}
	}
	counts := streamCounts(t, js)

	denied := []struct {
		role    bus.Role
		subject string
	}{
		{bus.RoleDispatch, bus.EventSubject("ch1", "ev1")},
		{bus.RoleIngest, bus.EventSubject("ch1", "ev1")},
		{bus.RoleLifecycle, bus.InboxSubject("dev1")},
		{bus.RoleIngest, bus.InboxSubject("dev1")},
		{bus.RoleLifecycle, bus.CommandSubject("ch1", "ev2")},
		{bus.RoleDispatch, bus.CommandSubject("ch1", "ev2")},
		{bus.RoleLifecycle, "$KV." + bus.BucketChannels + ".ch1"},
		{bus.RoleLifecycle, "$KV." + bus.BucketDevices + ".dev1"}, // dispatch may: it marks dead provider tokens
		{bus.RoleDispatch, "$KV." + bus.BucketSubs + ".ch1.dev1"},
		{bus.RoleLifecycle, "$KV." + bus.BucketUsage + ".t1.20260101"},
		{bus.RoleIngest, "$JS.API.STREAM.UPDATE." + bus.StreamEvents},
		{bus.RoleIngest, "$JS.API.STREAM.PURGE." + bus.StreamEvents},
		{bus.RoleDispatch, "$JS.API.STREAM.UPDATE." + bus.StreamEvents},
		{bus.RoleDispatch, "$JS.API.STREAM.UPDATE." + bus.StreamInbox},
		{bus.RoleLifecycle, "$JS.API.STREAM.UPDATE." + bus.StreamCommands},
		{bus.RoleLifecycle, "$JS.API.STREAM.MSG.DELETE." + bus.StreamInbox},
		{bus.RoleDispatch, "$JS.API.CONSUMER.CREATE." + bus.StreamCommands + "." + bus.ConsumerLifecycle},
		{bus.RoleIngest, "$JS.API.CONSUMER.DELETE." + bus.StreamEvents + "." + bus.ConsumerDispatch},
		{bus.RoleLifecycle, "$JS.API.CONSUMER.CREATE." + bus.StreamEvents + ".spy"},
		{bus.RoleLifecycle, bus.RedriveSubject},
		{bus.RoleDispatch, bus.RateLimitSubject},
		{bus.RoleDispatch, bus.StreamsSubject},
		{bus.RoleLifecycle, bus.StreamsSubject},
		// Only dispatch appends to the outcome journal and owns it; ingest only hears outcomes,
		// the auditor reads nothing but the log.
		{bus.RoleIngest, bus.OutcomesSubject},
		{bus.RoleLifecycle, bus.OutcomesSubject},
		{bus.RoleIngest, bus.OutcomeSubject("ch1", "op1")},
		{bus.RoleLifecycle, "$JS.API.STREAM.UPDATE." + bus.StreamOutcomes},
		{bus.RoleIngest, "$JS.API.STREAM.MSG.GET." + bus.StreamOutcomes},
		{bus.RoleAuditor, "$JS.API.STREAM.MSG.GET." + bus.StreamOutcomes},
		{bus.RoleAuditor, "$JS.API.STREAM.INFO." + bus.StreamOutcomes},
	}
	for _, c := range denied {
		if err := conns[c.role].Publish(c.subject, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := conns[c.role].Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range denied {
		waitViolation(t, violations[c.role], c.subject, "%s publishing to %s", c.role, c.subject)
	}
	// Nor can one read what another's connection gets: replies, KV traffic, doorbells.
	deniedSubs := []struct {
		role    bus.Role
		subject string
	}{
		{bus.RoleLifecycle, bus.InboxPrefix(bus.RoleIngest) + ".>"},
		{bus.RoleDispatch, "_INBOX.>"},
		{bus.RoleLifecycle, "$KV." + bus.BucketOps + ".>"},
		{bus.RoleDispatch, bus.OutcomeSubjects},
		{bus.RoleDispatch, bus.InboxSubjects},
		{bus.RoleLifecycle, ">"},
	}
	for _, c := range deniedSubs {
		if _, err := conns[c.role].Subscribe(c.subject, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		if err := conns[c.role].Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range deniedSubs {
		waitViolation(t, violations[c.role], c.subject, "%s subscribing to %s", c.role, c.subject)
	}
	if got := streamCounts(t, js); !maps.Equal(got, counts) {
		t.Errorf("streams changed by denied writes: %v, before %v", got, counts)
	}
}

func waitViolation(t *testing.T, v *bustest.Violations, subject, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !v.Has(subject) {
		if time.Now().After(deadline) {
			t.Errorf("no permission violation for "+format+" (got %v)", append(args, v.All())...)
			return
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// streamCounts returns the message count of every stream.
func streamCounts(t *testing.T, js jetstream.JetStream) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	names := js.StreamNames(t.Context())
	for name := range names.Name() {
		st, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = st.CachedInfo().State.Msgs
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
