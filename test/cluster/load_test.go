package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// op is one event op of the load and what became of it.
type op struct {
	channel, event, route, opID string
	body                        []byte
	acked                       bool // some attempt got 200
	version                     int  // from the 200
	applied                     bool
	targets                     int
}

// loadClient sends the load through both ingest replicas, retrying 503s and transport failures
// with the same op_id (bounded), and records what it saw.
type loadClient struct {
	urls []string
	http *http.Client

	mu         sync.Mutex
	unexpected []string               // answers other than 200/503
	okTimes    []time.Time            // when each 200 arrived
	okByCh     map[string][]time.Time // the same, per channel of an event op
	transport  int                    // failed attempts without an answer
	answers503 int
	codes503   map[string]int
}

func newClient(urls []string) *loadClient {
	return &loadClient{codes503: map[string]int{}, okByCh: map[string][]time.Time{}, urls: urls, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

type envelope struct {
	Success   bool            `json:"success"`
	Data      json.RawMessage `json:"data"`
	ErrorCode *string         `json:"error_code"`
}

// post sends one request to replica i and returns the status and data; status 0 is a transport
// failure.
func (c *loadClient) post(ctx context.Context, i int, path string, body []byte) (int, map[string]any, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.urls[i%len(c.urls)]+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, ""
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, ""
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, ""
	}
	var env envelope
	var data map[string]any
	code := ""
	if json.Unmarshal(raw, &env) == nil {
		_ = json.Unmarshal(env.Data, &data)
		if env.ErrorCode != nil {
			code = *env.ErrorCode
		}
	}
	return resp.StatusCode, data, code
}

// errGaveUp: every attempt of an op failed within the retry bounds.
var errGaveUp = errors.New("gave up")

// do sends an op until it is answered 200, alternating replicas, for at most maxAttempts
// attempts over at most maxTime.
func (c *loadClient) do(ctx context.Context, start int, path, ch string, body []byte) (map[string]any, error) {
	const maxAttempts, maxTime = 60, 2 * time.Minute
	deadline := time.Now().Add(maxTime)
	backoff := 100 * time.Millisecond
	for attempt := 0; attempt < maxAttempts && time.Now().Before(deadline); attempt++ {
		status, data, code := c.post(ctx, start+attempt, path, body)
		c.mu.Lock()
		switch status {
		case http.StatusOK:
			c.okTimes = append(c.okTimes, time.Now())
			if ch != "" {
				c.okByCh[ch] = append(c.okByCh[ch], time.Now())
			}
			c.mu.Unlock()
			return data, nil
		case http.StatusServiceUnavailable:
			c.answers503++
			c.codes503[code]++
		case 0:
			c.transport++
		default:
			c.unexpected = append(c.unexpected, fmt.Sprintf("%s %d %v", path, status, data))
			c.mu.Unlock()
			return nil, fmt.Errorf("%s answered %d", path, status)
		}
		c.mu.Unlock()
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return nil, errGaveUp
}

// setup creates the channels and subscribes two devices to each.
func (c *loadClient) setup(ctx context.Context, channels int) (map[string][]string, error) {
	devices := map[string][]string{}
	for i := range channels {
		d, err := c.do(ctx, i, "/channel/create", "", mustJSON(map[string]any{"channel_name": fmt.Sprint("load-", i), "password": "secret-123"}))
		if err != nil {
			return nil, err
		}
		ch := d["channel_id"].(string)
		for j := range 2 {
			d, err := c.do(ctx, i+j, "/device/register", "", mustJSON(map[string]any{"platform": "web"}))
			if err != nil {
				return nil, err
			}
			key := d["device_key"].(string)
			if _, err := c.do(ctx, i+j, "/channel/subscribe", "", mustJSON(map[string]any{"device_key": key, "channel_id": ch, "password": "secret-123"})); err != nil {
				return nil, err
			}
			devices[ch] = append(devices[ch], key)
		}
	}
	return devices, nil
}

// eventEvery paces each worker to at most one event per interval, so the load is steady across
// the faults and a device's inbox stays far below its cap.
const eventEvery = time.Second

// run drives event lifecycles (create, three updates, close) on every channel, one worker per
// channel, until enough ops are sent and stop is closed, or ctx ends.
func (c *loadClient) run(ctx context.Context, channels []string, minOps int64, stop <-chan struct{}) []*op {
	var mu sync.Mutex
	var all []*op
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w, ch := range channels {
		wg.Go(func() {
			pace := time.NewTicker(eventEvery)
			defer pace.Stop()
			for e := 0; ; e++ {
				select {
				case <-stop:
					if sent.Load() >= minOps {
						return
					}
				case <-ctx.Done():
					return
				default:
				}
				if e > 0 {
					select {
					case <-pace.C:
					case <-ctx.Done():
						return
					}
				}
				var ops []*op
				base := int64(1713750000000) + int64(e)*10_000
				create := &op{channel: ch, route: "create", opID: fmt.Sprintf("w%d-e%d-create", w, e)}
				create.body = mustJSON(map[string]any{"channel_id": ch, "password": "secret-123", "op_id": create.opID,
					"title": "load", "status": "running", "message": "started", "severity": "normal", "event_time": base,
					"attrs": map[string]any{"step": 0}})
				ops = append(ops, create)
				sent.Add(1)
				d, err := c.do(ctx, w+e, "/event/create", ch, create.body)
				if err == nil {
					create.acked, create.event = true, d["event_id"].(string)
					create.version, create.applied, create.targets = int(d["version"].(float64)), d["applied"].(bool), targets(d)
					for u := 1; u <= 4; u++ {
						o := &op{channel: ch, event: create.event, route: "update", opID: fmt.Sprintf("w%d-e%d-u%d", w, e, u)}
						if u == 4 {
							o.route, o.opID = "close", fmt.Sprintf("w%d-e%d-close", w, e)
						}
						o.body = mustJSON(map[string]any{"channel_id": ch, "password": "secret-123", "op_id": o.opID,
							"event_id": create.event, "status": fmt.Sprint("step-", u), "message": "progress", "severity": "normal",
							"event_time": base + int64(u), "attrs": map[string]any{"step": u}})
						ops = append(ops, o)
						sent.Add(1)
						d, err := c.do(ctx, w+e+u, "/event/"+o.route, ch, o.body)
						if err != nil {
							break
						}
						o.acked, o.version, o.applied, o.targets = true, int(d["version"].(float64)), d["applied"].(bool), targets(d)
					}
				}
				mu.Lock()
				all = append(all, ops...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return all
}

// progress returns the 200s, 503s and unanswered attempts so far.
func (c *loadClient) progress() (ok, unavailable, none int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.okTimes), c.answers503, c.transport
}

// answeredBetween counts the 200s to event ops on channel ch within [from, to].
func (c *loadClient) answeredBetween(ch string, from, to time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, at := range c.okByCh[ch] {
		if !at.Before(from) && !at.After(to) {
			n++
		}
	}
	return n
}

// maxStall is the longest time between two consecutive 200 answers (or from the start to the
// first) during the load.
func (c *loadClient) maxStall(start time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var worst time.Duration
	prev := start
	times := append([]time.Time(nil), c.okTimes...)
	sortTimes(times)
	for _, t := range times {
		if t.Before(start) {
			continue
		}
		worst = max(worst, t.Sub(prev))
		prev = t
	}
	return worst
}

// targets is data.delivery.targets of an event op answer.
func targets(d map[string]any) int {
	if del, ok := d["delivery"].(map[string]any); ok {
		n, _ := del["targets"].(float64)
		return int(n)
	}
	return -1
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
