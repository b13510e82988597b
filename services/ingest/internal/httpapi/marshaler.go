package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/services/ingest/internal/jsonreq"
)

// marshaler is the gateway's only runtime.Marshaler. Requests reach it already decoded by the
// middleware (decodedBody), so the body is parsed once and with our strict rules; responses
// are written in the success envelope with the API's JSON conventions.
type marshaler struct{}

var _ runtime.Marshaler = marshaler{}

// decodedBody stands in for a request body the middleware has decoded into msg.
type decodedBody struct{ msg proto.Message }

func (*decodedBody) Read([]byte) (int, error) { return 0, io.EOF }
func (*decodedBody) Close() error             { return nil }

func (marshaler) ContentType(any) string { return "application/json" }

func (marshaler) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		return successBody(m), nil
	}
	return json.Marshal(v)
}

func (marshaler) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return errors.New("not a proto message")
	}
	if e := jsonreq.Decode(data, m); e != nil {
		return e
	}
	return nil
}

func (m marshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		if d, ok := r.(*decodedBody); ok {
			// The middleware's message is not used again: move it rather than deep-copy it.
			dv, sv := reflect.ValueOf(v), reflect.ValueOf(d.msg)
			if dv.Type() != sv.Type() {
				return errors.New("decoded body of another type")
			}
			dv.Elem().Set(sv.Elem())
			return nil
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return m.Unmarshal(b, v)
	})
}

func (m marshaler) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := m.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
}
