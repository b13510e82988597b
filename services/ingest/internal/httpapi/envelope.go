package httpapi

import (
	"net/http"
	"strconv"

	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// The envelope of DESIGN.md §6.1 is written by hand: it is small, fixed and on every response.

// successBody wraps data in the success envelope.
func successBody(data proto.Message) []byte {
	b := make([]byte, 0, 512)
	b = append(b, `{"success":true,"data":`...)
	b = appendMessage(b, data.ProtoReflect())
	return append(b, `,"error":null,"error_code":null}`...)
}

// writeError answers with the error envelope; data is non-null only for the 503 dispatch
// outcomes.
func writeError(w http.ResponseWriter, e *apierr.Error) {
	metrics.APIErrors.WithLabelValues(e.Code).Inc()
	if e.HTTPStatus() == http.StatusTooManyRequests {
		metrics.RateLimitRefusals.WithLabelValues(e.Code).Inc()
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"success":false,"data":`...)
	if e.Data != nil {
		b = appendMessage(b, e.Data.ProtoReflect())
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"error":`...)
	b = appendString(b, e.Msg)
	b = append(b, `,"error_code":`...)
	b = appendString(b, e.Code)
	b = append(b, '}')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.HTTPStatus())
	_, _ = w.Write(b)
}
