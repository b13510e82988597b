//go:build unix

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// raiseFileLimit makes sure the process may open n files, raising the soft limit up to the
// hard one if needed (Go already raises it at start on most systems).
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("this test needs %d open files; the hard limit is %d", n, lim.Max)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise the open-file limit to %d: %v", n, err)
	}
}

// TestStreamsDropClientsThatDoNotRead: a stream whose client stops reading is dropped and its
// slot (here the device's only one) released: a WebSocket that answers no ping within the
// write timeout, and an SSE stream once a write has waited that long (the client's receive
// buffer is kept tiny, and the inbox holds megabytes the stream must write).
func TestStreamsDropClientsThatDoNotRead(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{streamsPerDevice: 1, keepAlive: 100 * time.Millisecond, streamWriteTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// A client whose sockets take in little: its kernel buffer fills after a few KiB unread.
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	transport := &http.Transport{DialContext: dialer.DialContext, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	slotFree := func(key string) bool {
		resp, err := dialStream(ctx, client, g, "/device/stream", key)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("stream: %d", resp.StatusCode)
		}
		return resp.StatusCode == http.StatusOK
	}

	t.Run("websocket", func(t *testing.T) {
		key := g.device(t, "web")
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(g.url, "http")+"/device/ws?device_key="+key, &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.CloseNow() }()
		// Never read: pings go unanswered.
		if slotFree(key) {
			t.Fatal("a second stream was admitted beside the open WebSocket")
		}
		eventually(t, 10*time.Second, "the WebSocket that does not read to be dropped", func() bool { return slotFree(key) })
	})

	t.Run("sse", func(t *testing.T) {
		key := g.device(t, "web")
		resp, err := dialStream(ctx, client, g, "/device/stream", key)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream: %d", resp.StatusCode)
		}
		// Never read the body. Keep-alives alone fill nothing for a long time; items do.
		if slotFree(key) {
			t.Fatal("a second stream was admitted beside the open SSE stream")
		}
		// 6 MB: more than the server's socket send buffer can grow to (tcp_wmem, 4 MiB max
		// by default on Linux) and the client's tiny receive buffer take together.
		fillInbox(t, g, key, 60, 100<<10)
		eventually(t, 30*time.Second, "the SSE stream that does not read to be dropped", func() bool { return slotFree(key) })
	})
}

// fillInbox appends n items of size bytes each to a device's inbox, as dispatch would.
func fillInbox(t *testing.T, g *gateway, key string, n, size int) {
	t.Helper()
	js := g.jetStream(t)
	filler := strings.Repeat("x", size)
	for range n {
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		raw, err := proto.Marshal(&busv1.InboxMessage{DeliveryId: hex.EncodeToString(id), Data: map[string]string{"message": filler}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), bus.InboxSubject(key), raw); err != nil {
			t.Fatal(err)
		}
	}
}
