package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// auditorURL reads <data-dir>/credentials/auditor.url, checking its modes and shape.
func auditorURL(t *testing.T, dataDir string) string {
	t.Helper()
	file := filepath.Join(dataDir, "credentials", "auditor.url")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %o, want 600", file, fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %o, want 700", filepath.Dir(file), di.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	line := string(b)
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Errorf("%s is not one line: %q", file, line)
	}
	u, err := url.Parse(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := u.User.Password(); u.Scheme != "nats" || u.User.Username() != "auditor" || len(pw) < 32 {
		t.Fatalf("%s = %q, want nats://auditor:<password>@host:port", file, line)
	}
	return u.String()
}

// TestAuditorAccess: `serve --nats-listen` lets the auditor read PUSHGO_EVENTS and nothing
// else, refuses anyone else, and keeps the auditor's password across restarts.
func TestAuditorAccess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr, natsAddr := freeAddr(t), freeAddr(t)
	p := start(t, "serve", "--data-dir", dir, "--http-addr", addr, "--grpc-addr", "", "--nats-listen", natsAddr)
	g := &gateway{url: "http://" + addr}
	g.waitReady(t)
	ch := g.channel(t)
	key := g.device(t, "ios")
	g.subscribe(t, key, ch)
	ev := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "audit-1"}))["event_id"].(string)
	g.mustOK(t, "/event/update", opBody(ch, ev, obj{"op_id": "audit-2"}))
	rawURL := auditorURL(t, dir)
	u, _ := url.Parse(rawURL)
	if u.Host != natsAddr {
		t.Errorf("auditor URL host %s, want %s", u.Host, natsAddr)
	}
	pw, _ := u.User.Password()

	// Nobody else gets in: no credentials, a wrong password, a service's name.
	for _, bad := range []string{"nats://" + natsAddr, "nats://auditor:wrong@" + natsAddr, "nats://ingest:" + pw + "@" + natsAddr} {
		if nc, err := nats.Connect(bad, nats.Timeout(2*time.Second)); err == nil {
			nc.Close()
			t.Errorf("%s was accepted", strings.Replace(bad, pw, "<auditor password>", 1))
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: %v, want an authorization violation", bad, err)
		}
	}

	v := &bustest.Violations{}
	nc, err := nats.Connect(rawURL, nats.CustomInboxPrefix(bus.InboxPrefix(bus.RoleAuditor)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { v.Add(err) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// It reads the log: stream info, leader get, direct get, batched history.
	events := g.layout().EventsStreamOf(ch)
	st, err := js.Stream(t.Context(), events)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("PUSHGO_EVENTS holds %d messages, want 2", n)
	}
	subject := g.layout().EventSubject(ch, ev)
	if m, err := bus.LastMsg(t.Context(), nc, events, subject); err != nil || m.Seq != 2 {
		t.Errorf("leader get of the head: %v %v", m, err)
	}
	if m, err := bus.DirectLastMsg(t.Context(), nc, events, subject); err != nil || m.Seq != 2 {
		t.Errorf("direct get of the head: %v %v", m, err)
	}
	var history []uint64
	if err := bus.History(t.Context(), nc, events, subject, 1, func(m *bus.Msg) error {
		history = append(history, m.Seq)
		return nil
	}); err != nil || len(history) != 2 {
		t.Errorf("history = %v, %v; want 2 entries", history, err)
	}

	// It writes nothing: not the log, not commands, not any bucket; nor does it manage streams
	// or create consumers (a consumer's deliver subject could copy the log elsewhere).
	publishes := []string{
		subject, g.layout().CommandSubject(ch, ev), bus.InboxSubject(key),
		"$KV." + bus.BucketOps + "." + bus.OpKey(ch, "audit-9"), "$KV." + bus.BucketChannels + "." + ch,
		"$KV." + bus.BucketDevices + "." + key, "$KV." + bus.BucketSubs + "." + bus.SubKey(ch, key),
		"$JS.API.STREAM.UPDATE." + events, "$JS.API.STREAM.DELETE." + events,
		"$JS.API.STREAM.MSG.DELETE." + events, "$JS.API.STREAM.PURGE." + events,
		"$JS.API.CONSUMER.CREATE." + events, "$JS.API.CONSUMER.CREATE." + events + ".spy",
		"$JS.API.CONSUMER.DELETE." + events + "." + bus.ConsumerDispatch,
		// Nor reads the buckets: devices, subscriptions, op records.
		"$JS.API.STREAM.MSG.GET." + bus.KVStream(bus.BucketDevices), "$JS.API.STREAM.MSG.GET." + bus.KVStream(bus.BucketSubs),
		"$JS.API.STREAM.MSG.GET." + bus.KVStream(bus.BucketOps),
		"$JS.API.DIRECT.GET." + bus.KVStream(bus.BucketDevices) + ".$KV." + bus.BucketDevices + "." + key,
		"$JS.API.DIRECT.GET." + bus.KVStream(bus.BucketSubs), "$JS.API.STREAM.INFO." + bus.KVStream(bus.BucketOps),
		"$JS.API.STREAM.MSG.GET." + bus.StreamInbox, "$JS.API.STREAM.INFO." + g.layout().CommandsStreamOf(ch),
		"$JS.API.STREAM.MSG.GET." + bus.StreamOutcomes, bus.OutcomeSubject(ch, "audit-9"),
	}
	for _, s := range publishes {
		if err := nc.Publish(s, []byte(`{"seq":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	// Nor listens to anyone's traffic: everything, others' replies, KV writes, doorbells.
	subscribes := []string{">", "_INBOX.>", "_INBOX_ingest.>", "$KV.>", "$KV." + bus.BucketDevices + ".>", "pushgo.>", bus.InboxSubject(key)}
	for _, s := range subscribes {
		if _, err := nc.Subscribe(s, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, s := range append(publishes, subscribes...) {
		eventually(t, 5*time.Second, "a permission violation for "+s, func() bool { return v.Has(s) })
	}
	// Through the client library, the same refusal.
	kctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := js.KeyValue(kctx, bus.BucketDevices); err == nil {
		t.Error("the auditor opened the devices bucket")
	}
	// Nothing changed: the log still holds its 2 entries and the event its state.
	if st, err := js.Stream(t.Context(), events); err != nil || st.CachedInfo().State.Msgs != 2 {
		t.Errorf("PUSHGO_EVENTS after the refused writes: %v", err)
	}
	if d := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev}); d["version"] != 2.0 {
		t.Errorf("event after the refused writes = %v", d)
	}
	nc.Close()
	p.stop(t)

	// A later start on another port keeps the password and names the new port.
	natsAddr2 := freeAddr(t)
	addr = freeAddr(t)
	p = start(t, "serve", "--data-dir", dir, "--http-addr", addr, "--grpc-addr", "", "--nats-listen", natsAddr2)
	(&gateway{url: "http://" + addr}).waitReady(t)
	u2, _ := url.Parse(auditorURL(t, dir))
	if pw2, _ := u2.User.Password(); pw2 != pw || u2.Host != natsAddr2 {
		t.Errorf("after a restart the URL is %s, want the same password at %s", u2.Redacted(), natsAddr2)
	}
	nc2, err := nats.Connect(u2.String(), nats.CustomInboxPrefix(bus.InboxPrefix(bus.RoleAuditor)))
	if err != nil {
		t.Fatalf("auditor after a restart: %v", err)
	}
	nc2.Close()
	p.stop(t)
}
