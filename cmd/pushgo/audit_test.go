package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/lifecycle/audit"
)

// audit runs `pushgo audit args…` in process against the gateway's JetStream, with the
// auditor's credentials: what the permission table gives it must be enough.
func (g *gateway) audit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	u, err := url.Parse(g.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(string(bus.RoleAuditor), bustest.RolePassword(bus.RoleAuditor))
	args = append(args, "--nats-url", u.String(), "--log-public-keys", g.cfg.ingest.LogPublicKeys)
	code = auditCommand(t.Context(), args, func(string) string { return "" }, &out, &errOut)
	return code, out.String(), errOut.String()
}

// summary returns the verify summary line.
func summary(t *testing.T, out string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "audit: events=") {
		t.Fatalf("no summary line in %q", out)
	}
	return last
}

// TestAudit: export gives every entry, equal to /event/history; verify passes a genuine log and
// names each forged or replayed entry; state --at shows events as they were.
func TestAudit(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch, other := g.channel(t), g.channel(t)
	var evs []string
	for i := range 3 {
		ev := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": fmt.Sprint("c", i), "thing_id": fmt.Sprint("thing-", i)}))["event_id"].(string)
		g.mustOK(t, "/event/update", opBody(ch, ev, obj{"op_id": fmt.Sprint("u", i)}))
		evs = append(evs, ev)
	}
	g.mustOK(t, "/event/close", opBody(ch, evs[0], obj{"op_id": "x0", "status": "success"}))
	// A late update: recorded, not applied.
	g.mustOK(t, "/event/update", opBody(ch, evs[1], obj{"op_id": "late", "event_time": 1713749000000}))
	g.mustOK(t, "/event/create", createBody(other, obj{"op_id": "other"}))

	// Export: one line per entry, the same as /event/history.
	code, out, errOut := g.audit(t, "export")
	if code != 0 {
		t.Fatalf("export: %d %s", code, errOut)
	}
	var lines []audit.Line
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l audit.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 9 {
		t.Fatalf("export wrote %d lines, want 9", len(lines))
	}
	for _, ev := range evs {
		hist := g.mustOK(t, "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})["entries"].([]any)
		var mine []audit.Line
		for _, l := range lines {
			if l.EventID == ev {
				mine = append(mine, l)
			}
		}
		if len(mine) != len(hist) {
			t.Fatalf("event %s: export has %d entries, history %d", ev, len(mine), len(hist))
		}
		for i, h := range hist {
			h := h.(map[string]any)
			l := mine[i]
			got := fmt.Sprint(l.Version, l.Route, l.OpID, l.EventTime, l.RecordedAt, l.Applied)
			num := func(v any) int64 { f, _ := v.(float64); return int64(f) }
			want := fmt.Sprint(num(h["version"]), h["route"], h["op_id"], num(h["event_time"]), num(h["recorded_at"]), h["applied"])
			if got != want || l.KeyID == "" || l.Auth == "" || (i > 0) != (l.PrevHash != "") {
				t.Fatalf("event %s entry %d: export %s (key %q), history %s", ev, i, got, l.KeyID, want)
			}
		}
	}
	if code, out, _ := g.audit(t, "export", "--channel", ch, "--thing", "thing-2"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("export --thing: %d %q", code, out)
	}

	// Verify: a genuine log is clean.
	code, out, errOut = g.audit(t, "verify")
	if code != 0 || summary(t, out) != "audit: events=4 entries=9 ok=9 unsigned=0 broken=0 mismatched=0" {
		t.Fatalf("verify of a genuine log: %d %q %s", code, out, errOut)
	}

	// State at a moment between the update and the close of evs[0]: ONGOING.
	closeAt := lines[0].RecordedAt
	for _, l := range lines {
		if l.EventID == evs[0] && l.Route == "close" {
			closeAt = l.RecordedAt
		}
	}
	code, out, _ = g.audit(t, "state", "--at", fmt.Sprint(closeAt-1), "--channel", ch, "--event", evs[0])
	if code != 0 || json.Unmarshal([]byte(out), &map[string]any{}) != nil || !strings.Contains(out, `"event_state":"ONGOING"`) {
		t.Fatalf("state before the close: %d %q", code, out)
	}
	if code, out, _ = g.audit(t, "state", "--at", time.Now().Add(time.Hour).Format(time.RFC3339), "--channel", ch, "--event", evs[0]); code != 0 || !strings.Contains(out, `"event_state":"CLOSED"`) {
		t.Fatalf("state now: %d %q", code, out)
	}

	// Tampering: a forged entry and a replayed one; verify names both and exits 1.
	js := g.jetStream(t)
	forged, _ := proto.Marshal(&busv1.EventRecorded{
		Envelope: &busv1.Envelope{Id: "f", Type: "event.updated", ChannelId: ch, EventId: evs[2], OpId: "forged"},
		Route:    "update", Applied: true, Version: 3, State: &apiv1.Event{EventId: evs[2], Status: "FORGED"},
	})
	ack, err := js.Publish(t.Context(), g.layout().EventSubject(ch, evs[2]), forged)
	if err != nil {
		t.Fatal(err)
	}
	var firstOfOther []byte
	var otherEvent string
	for _, l := range lines {
		if l.ChannelID == other {
			otherEvent = l.EventID
			m, err := bus.LeaderMsg(t.Context(), g.natsConn(t, "ingest"), g.layout().EventsStreamOf(other), l.Seq)
			if err != nil {
				t.Fatal(err)
			}
			firstOfOther = m.Data
		}
	}
	replay, err := js.Publish(t.Context(), g.layout().EventSubject(other, otherEvent), firstOfOther)
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ = g.audit(t, "verify")
	if code != 1 || summary(t, out) != "audit: events=4 entries=11 ok=9 unsigned=0 broken=2 mismatched=0" ||
		!strings.Contains(out, fmt.Sprintf("seq %d: no authenticator", ack.Sequence)) ||
		!strings.Contains(out, fmt.Sprintf("seq %d: prev_hash does not match", replay.Sequence)) {
		t.Fatalf("verify of a tampered log: %d\n%s", code, out)
	}
}

// TestSignedStoreUpgrade (issue 11 part 6): a store written without log keys, as by builds
// before the signed log, still serves once the gateway signs; audit verify reports its old
// entries unsigned, not broken, and the new ones chained, also across the two.
func TestSignedStoreUpgrade(t *testing.T) {
	t.Parallel()
	ns := bustest.RunSecured(t)
	old := startGateway(t, gatewayOpts{ns: ns, unsigned: true})
	ch := old.channel(t)
	ev := old.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "old-c"}))["event_id"].(string)
	old.mustOK(t, "/event/update", opBody(ch, ev, obj{"op_id": "old-u"}))
	old.stop()

	g := startGateway(t, gatewayOpts{ns: ns})
	if st := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev}); st["version"] != 2.0 {
		t.Fatalf("an old event after the upgrade: %v", st)
	}
	if h := g.mustOK(t, "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": ev}); len(h["entries"].([]any)) != 2 {
		t.Fatalf("old history: %v", h)
	}
	g.mustOK(t, "/event/close", opBody(ch, ev, obj{"op_id": "new-x", "status": "success"}))
	fresh := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "new-c"}))["event_id"].(string)
	g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": fresh})
	code, out, errOut := g.audit(t, "verify")
	if code != 0 || summary(t, out) != "audit: events=2 entries=4 ok=2 unsigned=2 broken=0 mismatched=0" {
		t.Fatalf("verify after the upgrade: %d %q %s", code, out, errOut)
	}
}

// TestAuditDataDir runs the binary: `pushgo audit verify --data-dir` on a stopped serve data
// dir, which it leaves as it was.
func TestAuditDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	p := start(t, "serve", "--data-dir", dir, "--http-addr", addr, "--grpc-addr", "")
	g := &gateway{url: "http://" + addr}
	g.waitReady(t)
	ch := g.channel(t)
	ev := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "c"}))["event_id"].(string)
	g.mustOK(t, "/event/close", opBody(ch, ev, obj{"op_id": "x", "status": "success"}))
	p.stop(t)

	before := treeDigest(t, dir)
	out, err := exec.Command(pushgoBinary(t), "audit", "verify", "--data-dir", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit: events=1 entries=2 ok=2 unsigned=0 broken=0 mismatched=0") {
		t.Fatalf("audit verify --data-dir: %v\n%s", err, out)
	}
	out, err = exec.Command(pushgoBinary(t), "audit", "export", "--data-dir", dir).Output()
	if err != nil || strings.Count(string(out), "\n") != 2 {
		t.Fatalf("audit export --data-dir: %v\n%s", err, out)
	}
	if after := treeDigest(t, dir); after != before {
		t.Fatal("audit changed the data dir")
	}
	if err := exec.Command(pushgoBinary(t), "audit", "verify").Run(); err == nil {
		t.Fatal("audit without a source succeeded")
	}
}

// treeDigest lists every file under dir with its size and modification time.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
