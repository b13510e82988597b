package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cli runs the built binary as a client of url with env, stdin as its input, and returns its
// stdout, stderr and exit status.
func cli(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), pushgoBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestCLI drives a gateway with the client commands of the built binary, as a user would:
// `pushgo listen` (one process) prints what `pushgo event create` and `update` (others) sent,
// and exits 0 on SIGINT; errors go to stderr with exit status 1 (4xx) or 2 (no answer).
func TestCLI(t *testing.T) {
	t.Parallel()
	addr, dataDir := freeAddr(t), t.TempDir()
	gw := start(t, "serve", "--data-dir", dataDir, "--http-addr", addr, "--grpc-addr", "", "--token", "tok")
	(&gateway{url: "http://" + addr}).waitReady(t)
	env := []string{"PUSHGO_URL=http://" + addr, "PUSHGO_TOKEN=tok", "PUSHGO_PASSWORD=secret-123"}
	data := func(out, stderr string, code int) map[string]any {
		t.Helper()
		var d map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		return d
	}
	ch := data(cli(t, env, "", "channel", "create", "--name", "deploys"))["channel_id"].(string)
	env = append(env, "PUSHGO_CHANNEL_ID="+ch)
	key := data(cli(t, env, "", "device", "register", "--platform", "server"))["device_key"].(string)
	data(cli(t, env, "", "device", "subscribe", "--device-key", key))

	listen := exec.Command(pushgoBinary(t), "listen", "--device-key", key, "--json")
	listen.Env = append(os.Environ(), env...)
	var lines syncBuffer
	var lerr syncBuffer
	listen.Stdout, listen.Stderr = &lines, &lerr
	if err := listen.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- listen.Wait() }()
	t.Cleanup(func() {
		if listen.ProcessState == nil {
			_ = listen.Process.Kill()
			<-done
		}
	})

	created := data(cli(t, env, "", "event", "create", "--title", "Deploy api", "--status", "running", "--message", "step 1",
		"--severity", "high", "--op-id", "cli-1", "--attr", "step=1", "--attr", "env=prod", "--tag", "deploy"))
	ev := created["event_id"].(string)
	if created["event_state"] != "ONGOING" || created["version"] != 1.0 {
		t.Fatalf("create = %v", created)
	}
	// A body on stdin, a flag beside it.
	data(cli(t, env, `{"status":"running","message":"step 2","severity":"high"}`, "event", "update", "--event-id", ev, "-"))

	// printed are the pushes listen has printed, one JSON object a line.
	printed := func() []map[string]string {
		var out []map[string]string
		for line := range strings.SplitSeq(strings.TrimSpace(lines.String()), "\n") {
			var p map[string]string
			if json.Unmarshal([]byte(line), &p) == nil {
				out = append(out, p)
			}
		}
		return out
	}
	var got []map[string]string
	eventually(t, 15*time.Second, "both pushes printed by pushgo listen", func() bool {
		got = printed()
		return len(got) == 2
	})
	if got[0]["event_id"] != ev || got[0]["title"] != "Deploy api" || got[0]["message"] != "step 1" || got[0]["attrs"] != `{"env":"prod","step":1}` ||
		got[0]["tags"] != `["deploy"]` || got[1]["message"] != "step 2" || got[1]["event_version"] != "2" {
		t.Fatalf("pushes printed: %v", got)
	}
	// The gateway restarts (same data, same address): listen reconnects, resumes after the last
	// push it printed, and prints the next one once, without the first two again.
	gw.stop(t)
	gw = start(t, "serve", "--data-dir", dataDir, "--http-addr", addr, "--grpc-addr", "", "--token", "tok")
	(&gateway{url: "http://" + addr}).waitReady(t)
	data(cli(t, env, "", "event", "update", "--event-id", ev, "--status", "running", "--message", "step 3", "--severity", "high"))
	eventually(t, 20*time.Second, "the push after the restart printed", func() bool {
		got = printed()
		return len(got) >= 3
	})
	if len(got) != 3 || got[2]["message"] != "step 3" || got[2]["event_version"] != "3" {
		t.Fatalf("pushes printed across the restart: %v", got)
	}
	if err := listen.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pushgo listen after SIGINT: %v (%s)", err, lerr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pushgo listen still running 10 s after SIGINT")
	}

	if h := data(cli(t, env, "", "event", "history", "--event-id", ev)); len(h["entries"].([]any)) != 3 {
		t.Fatalf("history = %v", h)
	}
	if l := data(cli(t, env, "", "event", "list")); len(l["events"].([]any)) != 1 {
		t.Fatalf("list = %v", l)
	}
	data(cli(t, env, "", "event", "close", "--event-id", ev, "--status", "done", "--message", "shipped", "--severity", "low"))
	if g := data(cli(t, env, "", "event", "get", "--event-id", ev)); g["event_state"] != "CLOSED" {
		t.Fatalf("get after close = %v", g)
	}

	// Errors: the envelope on stderr, exit 1 for a 4xx, 2 for no answer or a usage error.
	out, stderr, code := cli(t, env, "", "event", "update", "--event-id", "nope", "--status", "s", "--message", "m", "--severity", "low")
	if code != 1 || out != "" || !strings.Contains(stderr, `"error_code":"event_not_found"`) {
		t.Fatalf("update of an unknown event: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if _, stderr, code := cli(t, append(env, "PUSHGO_TOKEN=wrong"), "", "event", "get", "--event-id", ev); code != 1 || !strings.Contains(stderr, "authentication_failed") {
		t.Fatalf("wrong token: exit %d, %q", code, stderr)
	}
	if _, stderr, code := cli(t, env, "", "event", "get", "--event-id", ev, "--url", "http://"+freeAddr(t)); code != 2 || !strings.Contains(stderr, "no answer") {
		t.Fatalf("no gateway: exit %d, %q", code, stderr)
	}
	if _, _, code := cli(t, env, "", "event", "create", "--attr", "novalue"); code != 2 {
		t.Fatalf("--attr without =: exit %d", code)
	}
	if out, _, code := cli(t, nil, "", "version"); code != 0 || !strings.HasPrefix(out, "pushgo ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	gw.stop(t)
}

func TestPrintPush(t *testing.T) {
	data := `{"delivery_id":"d","seq":"7","payload":{"sent_at":"1713750000000","event_state":"ONGOING","severity":"high",` +
		`"title":"Deploy api","status":"running","message":"step 1","event_id":"e1","event_version":"3"}}`
	for _, tc := range []struct {
		data   string
		asJSON bool
		want   string
		ok     bool
	}{
		{data, false, "2024-04-22T01:40:00Z ONGOING high Deploy api: running — step 1 (event e1, v3)\n", true},
		{data, true, `{"event_id":"e1","event_state":"ONGOING","event_version":"3","message":"step 1","sent_at":"1713750000000","severity":"high","status":"running","title":"Deploy api"}` + "\n", true},
		{`{"error_code":"device_key_not_found"}`, false, "", false},
		{`not json`, true, "", false},
	} {
		var b bytes.Buffer
		if ok := printPush(&b, tc.data, tc.asJSON); ok != tc.ok || b.String() != tc.want {
			t.Errorf("printPush(%.40s, %v) = %v %q, want %v %q", tc.data, tc.asJSON, ok, b.String(), tc.ok, tc.want)
		}
	}
}

func TestEventTime(t *testing.T) {
	for in, want := range map[string]any{"1713750000": "1713750000", "1713750000123": "1713750000123", "2024-04-22T01:40:00Z": int64(1713750000000)} {
		if got, err := eventTime(in); err != nil || got != want {
			t.Errorf("eventTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-5", "1.5"} {
		if _, err := eventTime(in); err == nil {
			t.Errorf("eventTime(%q) accepted", in)
		}
	}
}
