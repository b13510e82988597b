package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

// Streams serves a device's inbox live. The ingest service implements it over PUSHGO_INBOX.
type Streams interface {
	// Open admits one live stream of deviceKey: nil error when it names a current device and
	// the stream limits (package streamlimit) allow one more. release must be called once when
	// the stream ends.
	Open(ctx context.Context, deviceKey string) (release func(), err error)
	// Follow calls fn with the inbox items after sequence after, then with new ones, until ctx
	// ends or fn fails.
	Follow(ctx context.Context, deviceKey string, after uint64, fn func(*apiv1.InboxItem) error) error
	// Ack removes one item; false when it was not there.
	Ack(ctx context.Context, deviceKey, deliveryID string) (bool, error)
}

// DefaultKeepAlive is how often an idle stream sends a keep-alive (an SSE comment or a
// WebSocket ping), below the idle timeouts of common proxies.
const DefaultKeepAlive = 15 * time.Second

// DefaultStreamWriteTimeout bounds each write (and flush) of a stream and the wait for a
// WebSocket pong. A client that stops reading is dropped once its connection's buffers are
// full and a write has waited this long; a WebSocket client that does not answer pings, within
// the keep-alive interval plus this.
const DefaultStreamWriteTimeout = 10 * time.Second

// streamDevice checks a stream request and admits it, answering errors itself: the envelope
// (e.g. 429 too_many_streams) before anything is streamed or upgraded. On success the caller
// must call release when the stream ends.
func (h *handler) streamDevice(w http.ResponseWriter, r *http.Request) (key string, release func(), ok bool) {
	if r.Method != http.MethodGet {
		writeError(w, apierr.Newf("method_not_allowed", "method %s is not allowed on %s", r.Method, r.URL.Path))
		return "", nil, false
	}
	if h.opts.Streams == nil {
		writeError(w, apierr.Newf("route_not_found", "no route %s", r.URL.Path))
		return "", nil, false
	}
	key, verr := validate.DeviceKey(r.URL.Query().Get("device_key"))
	if verr != nil {
		writeError(w, verr)
		return "", nil, false
	}
	release, err := h.opts.Streams.Open(r.Context(), key)
	if err != nil {
		writeError(w, apierr.FromError(err))
		return "", nil, false
	}
	return key, release, true
}

// streamContext ends when the request does or the server begins to shut down.
func (h *handler) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	if h.opts.Done != nil {
		go func() {
			select {
			case <-h.opts.Done:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// follow runs Streams.Follow in the background and hands its items over a channel.
func (h *handler) follow(ctx context.Context, key string, after uint64) (<-chan *apiv1.InboxItem, <-chan error) {
	items, done := make(chan *apiv1.InboxItem, 64), make(chan error, 1)
	go func() {
		done <- h.opts.Streams.Follow(ctx, key, after, func(it *apiv1.InboxItem) error {
			select {
			case items <- it:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return items, done
}

// sse serves GET /device/stream?device_key=…: Server-Sent Events of the device's inbox, every
// item still there and then new ones, each with id = its inbox seq. A client that reconnects
// with Last-Event-ID (or ?last_event_id=) resumes after it. Items are not removed: ack them
// with /messages/ack. Idle streams get a comment every KeepAlive.
//
// Each write and flush has the stream write timeout as its deadline; one that misses it (the
// client stopped reading and the connection's buffers are full) ends the stream. Deadlines the
// server set for the request (whole-body read, write) are cleared first: they are for
// non-streaming routes.
func (h *handler) sse(w http.ResponseWriter, r *http.Request) {
	key, release, ok := h.streamDevice(w, r)
	if !ok {
		return
	}
	defer release()
	live := metrics.LiveStreams.WithLabelValues("sse")
	live.Inc()
	defer live.Dec()
	rc := http.NewResponseController(w)
	if err := clearDeadlines(rc); err != nil {
		writeError(w, apierr.New("internal_error", "internal error"))
		return
	}
	timeout := h.writeTimeout()
	write := func(b []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = r.URL.Query().Get("last_event_id")
	}
	after, _ := strconv.ParseUint(lastID, 10, 64)

	ctx, cancel := h.streamContext(r)
	defer cancel()
	items, done := h.follow(ctx, key, after)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if write([]byte(": connected\n\n")) != nil {
		return
	}
	tick := time.NewTicker(h.keepAlive())
	defer tick.Stop()
	for {
		var b []byte
		select {
		case it := <-items:
			b = append(b, "id: "...)
			b = strconv.AppendUint(b, it.GetSeq(), 10)
			b = append(b, "\nevent: message\ndata: "...)
			b = appendMessage(b, it.ProtoReflect())
			b = append(b, "\n\n"...)
		case <-tick.C:
			b = []byte(": keep-alive\n\n")
		case err := <-done:
			if ctx.Err() == nil && err != nil {
				e := apierr.FromError(err)
				b = append(b, "event: error\ndata: "...)
				b = append(b, `{"error_code":`...)
				b = appendString(b, e.Code)
				b = append(b, "}\n\n"...)
				_ = write(b)
			}
			return
		case <-ctx.Done():
			return
		}
		if write(b) != nil {
			return // the client does not read, or has gone
		}
	}
}

// clearDeadlines removes the read and write deadlines the server set on the connection for
// this request: a stream lives longer than any request may take. A ResponseWriter that cannot
// reach its connection (a wrapper without Unwrap, a test recorder) has none to clear.
func clearDeadlines(rc *http.ResponseController) error {
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// wsFrame is a frame a WebSocket client sends.
type wsFrame struct {
	Type       string `json:"type"`
	DeliveryID string `json:"delivery_id"`
}

// ws serves GET /device/ws?device_key=…[&after_seq=N]: the same items as JSON frames
// {"type":"message","delivery_id","seq","payload"}. The client acks with
// {"type":"ack","delivery_id"} (answered {"type":"acked","delivery_id","removed"}); acked items
// are removed, unacked ones are sent again on the next connection. {"type":"ping"} is answered
// {"type":"pong"}.
//
// Every write waits at most the stream write timeout, and every keep-alive ping at most that
// long for its pong: a client that stops reading is dropped within the keep-alive interval
// plus the write timeout. (Hijacking the connection clears the server's deadlines.)
func (h *handler) ws(w http.ResponseWriter, r *http.Request) {
	key, release, ok := h.streamDevice(w, r)
	if !ok {
		return
	}
	defer release()
	live := metrics.LiveStreams.WithLabelValues("ws")
	live.Inc()
	defer live.Dec()
	after, _ := strconv.ParseUint(r.URL.Query().Get("after_seq"), 10, 64)
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer func() { _ = c.CloseNow() }()
	ctx, cancel := h.streamContext(r)
	defer cancel()
	items, done := h.follow(ctx, key, after)
	timeout := h.writeTimeout()
	write := func(b []byte) error {
		wctx, wcancel := context.WithTimeout(ctx, timeout)
		defer wcancel()
		return c.Write(wctx, websocket.MessageText, b)
	}

	go func() { // reader: acks and pings
		defer cancel()
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			var f wsFrame
			var reply []byte
			switch {
			case json.Unmarshal(data, &f) != nil:
				reply = wsError("invalid_frame", "frames are JSON objects with a type")
			case f.Type == "ping":
				reply = []byte(`{"type":"pong"}`)
			case f.Type == "ack":
				_, id, verr := validate.Ack(&apiv1.AckRequest{DeviceKey: key, DeliveryId: f.DeliveryID})
				if verr != nil {
					reply = wsError(verr.Code, verr.Msg)
					break
				}
				removed, err := h.opts.Streams.Ack(ctx, key, id)
				if err != nil {
					e := apierr.FromError(err)
					reply = wsError(e.Code, e.Msg)
					break
				}
				reply = append(append([]byte(`{"type":"acked","delivery_id":`), appendString(nil, id)...), `,"removed":`...)
				reply = append(strconv.AppendBool(reply, removed), '}')
			default:
				reply = wsError("invalid_frame", "unknown frame type")
			}
			if err := write(reply); err != nil {
				return
			}
		}
	}()

	tick := time.NewTicker(h.keepAlive())
	defer tick.Stop()
	for {
		select {
		case it := <-items:
			b := append([]byte(`{"type":"message",`), appendMessage(nil, it.ProtoReflect())[1:]...)
			if err := write(b); err != nil {
				return
			}
		case <-tick.C:
			pctx, pcancel := context.WithTimeout(ctx, timeout)
			err := c.Ping(pctx)
			pcancel()
			if err != nil {
				return
			}
		case err := <-done:
			if ctx.Err() == nil && err != nil && !errors.Is(err, context.Canceled) {
				e := apierr.FromError(err)
				_ = write(wsError(e.Code, e.Msg))
				_ = c.Close(websocket.StatusInternalError, e.Code)
			}
			return
		case <-ctx.Done():
			_ = c.Close(websocket.StatusGoingAway, "closing")
			return
		}
	}
}

func wsError(code, msg string) []byte {
	b := []byte(`{"type":"error","error_code":`)
	b = appendString(b, code)
	b = append(b, `,"error":`...)
	b = appendString(b, msg)
	return append(b, '}')
}

func (h *handler) writeTimeout() time.Duration {
	if h.opts.StreamWriteTimeout > 0 {
		return h.opts.StreamWriteTimeout
	}
	return DefaultStreamWriteTimeout
}

func (h *handler) keepAlive() time.Duration {
	if h.opts.KeepAlive > 0 {
		return h.opts.KeepAlive
	}
	return DefaultKeepAlive
}
