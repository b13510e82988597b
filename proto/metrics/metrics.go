// Package metrics holds the gateway's Prometheus metric families (DESIGN.md §11), one place for
// their names, labels and buckets, registered with the default registry so that `pushgo serve`
// exposes every service's on one /metrics (with the Go runtime's and the process's). Label
// values come from small fixed sets (routes, error codes, delivery routes), never from ids.
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "pushgo"

// latencyBuckets are the buckets of request and provider latencies: 1 ms to 10 s.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

var (
	// HTTPRequests is the latency of HTTP API requests by route (the path of a known route,
	// "other" for the rest) and status code. Live streams are not in it (LiveStreams).
	HTTPRequests = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "http_request_duration_seconds",
		Help:    "Latency of HTTP API requests by route and status code (live streams excluded).",
		Buckets: latencyBuckets,
	}, []string{"route", "code"})
	// Ops counts event ops (create, update, close) by their final answer: "ok" or the
	// error_code (dispatch_partial_failure, dispatch_timeout, rate_limited, …).
	Ops = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "ops_total",
		Help: "Event ops by route and outcome: ok or the error_code.",
	}, []string{"route", "outcome"})
	// APIErrors counts the error answers of the API (HTTP and gRPC) by error_code.
	APIErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "api_errors_total",
		Help: "Error answers of the HTTP and gRPC API by error_code.",
	}, []string{"code"})
	// RateLimitRefusals counts the requests refused with 429 by error_code (rate_limited,
	// too_many_attempts, too_many_streams, …).
	RateLimitRefusals = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "rate_limit_refusals_total",
		Help: "Requests refused with 429 by error_code.",
	}, []string{"code"})
	// Deliveries counts delivery results by route (private, webhook, apns, fcm, liveactivity)
	// and result (delivered, failed), the durable webhook retries' included.
	Deliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "deliveries_total",
		Help: "Deliveries of ops to targets by route and result (delivered, failed).",
	}, []string{"route", "result"})
	// ProviderRequests is the latency of each request to a push provider or webhook receiver
	// by provider (apns, fcm, webhook) and result (ok, failed).
	ProviderRequests = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "provider_request_duration_seconds",
		Help:    "Latency of requests to APNs, FCM and webhook receivers by provider and result.",
		Buckets: latencyBuckets,
	}, []string{"provider", "result"})
	// LiveStreams is the number of open live streams on this instance by kind (sse, ws).
	LiveStreams = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "live_streams",
		Help: "Open live streams (SSE and WebSocket) on this instance by kind.",
	}, []string{"kind"})
	// IntegrityFailures counts event log entries that failed their integrity check
	// (proto/logsign): a forged, altered or misplaced entry.
	IntegrityFailures = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "integrity_failures_total",
		Help: "Event log entries that failed their integrity check.",
	})
)

// Handler serves the default registry in the Prometheus text format.
func Handler() http.Handler { return promhttp.Handler() }

// Since returns the seconds elapsed since t, for observing latencies.
func Since(t time.Time) float64 { return time.Since(t).Seconds() }

// Result is "ok" when err is nil and "failed" otherwise.
func Result(ok bool) string {
	if ok {
		return "ok"
	}
	return "failed"
}

// scrapeTimeout bounds the broker calls of one scrape of a Broker collector.
const scrapeTimeout = 2 * time.Second

var (
	consumerPending = prometheus.NewDesc(namespace+"_consumer_pending_messages",
		"Messages of a durable consumer's stream not yet delivered to it, by stream and consumer.", []string{"stream", "consumer"}, nil)
	consumerAckPending = prometheus.NewDesc(namespace+"_consumer_ack_pending_messages",
		"Messages delivered to a durable consumer and not yet acknowledged, by stream and consumer.", []string{"stream", "consumer"}, nil)
	streamMessages = prometheus.NewDesc(namespace+"_stream_messages",
		"Messages held by a stream (PUSHGO_INBOX: the inbox depth of all devices; PUSHGO_RETRIES: scheduled webhook retries).", []string{"stream"}, nil)
)

// broker reads, on each scrape, what the broker knows for the sources the services watch
// (WatchBroker): the pending counts of durable consumers and the message counts of streams.
type broker struct {
	mu      sync.Mutex
	sources map[*brokerSource]struct{}
}

type brokerSource struct {
	consumers []jetstream.Consumer
	streams   []jetstream.Stream
}

var brokerCollector = func() *broker {
	b := &broker{sources: map[*brokerSource]struct{}{}}
	prometheus.MustRegister(b)
	return b
}()

// WatchBroker reports consumers' pending counts and streams' message counts on every scrape
// until stop is called (when the service that watches them stops). Each service watches what
// it may read: its own durable consumers, streams it owns. Where two sources report the same
// consumer or stream (two gateways in one test process), the first answer is kept.
func WatchBroker(consumers []jetstream.Consumer, streams []jetstream.Stream) (stop func()) {
	src := &brokerSource{consumers: consumers, streams: streams}
	brokerCollector.mu.Lock()
	brokerCollector.sources[src] = struct{}{}
	brokerCollector.mu.Unlock()
	return func() {
		brokerCollector.mu.Lock()
		delete(brokerCollector.sources, src)
		brokerCollector.mu.Unlock()
	}
}

func (b *broker) Describe(ch chan<- *prometheus.Desc) {
	ch <- consumerPending
	ch <- consumerAckPending
	ch <- streamMessages
}

// Collect reads each source's infos; one the broker does not answer in time is left out of
// this scrape.
func (b *broker) Collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	sources := make([]*brokerSource, 0, len(b.sources))
	for s := range b.sources {
		sources = append(sources, s)
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	seen := map[string]bool{}
	for _, src := range sources {
		for _, c := range src.consumers {
			info, err := c.Info(ctx)
			if err != nil || seen["c "+info.Stream+" "+info.Name] {
				continue
			}
			seen["c "+info.Stream+" "+info.Name] = true
			ch <- prometheus.MustNewConstMetric(consumerPending, prometheus.GaugeValue, float64(info.NumPending), info.Stream, info.Name)
			ch <- prometheus.MustNewConstMetric(consumerAckPending, prometheus.GaugeValue, float64(info.NumAckPending), info.Stream, info.Name)
		}
		for _, s := range src.streams {
			info, err := s.Info(ctx)
			if err != nil || seen["s "+info.Config.Name] {
				continue
			}
			seen["s "+info.Config.Name] = true
			ch <- prometheus.MustNewConstMetric(streamMessages, prometheus.GaugeValue, float64(info.State.Msgs), info.Config.Name)
		}
	}
}
