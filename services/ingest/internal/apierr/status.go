package apierr

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// Status is the gRPC form of e: its kind's code, its message, and an ErrorInfo whose reason is
// the error_code (plus e.Data as a second detail when set).
func (e *Error) Status() *status.Status {
	st := status.New(e.GRPCCode(), e.Msg)
	md := map[string]string{"http_status": strconv.Itoa(e.HTTPStatus())}
	if e.RetryAfter > 0 {
		md["retry_after"] = strconv.Itoa(e.RetryAfter)
	}
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: e.Code, Domain: Domain, Metadata: md}}
	if e.Data != nil {
		details = append(details, protoadapt.MessageV1Of(e.Data))
	}
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return st
}

// GRPCStatus makes an *Error a gRPC status error: a gRPC server answers it as Status, while
// an in-process caller (the REST gateway through grpcapi.Inline) gets the *Error itself and
// skips building and parsing the status's details.
func (e *Error) GRPCStatus() *status.Status { return e.Status() }

// FromStatus recovers the API error from a gRPC status made by Status. A status from elsewhere
// (no ErrorInfo of ours) is mapped by its code.
func FromStatus(st *status.Status) *Error {
	e := &Error{Msg: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == Domain {
				e.Code = d.GetReason()
				e.RetryAfter, _ = strconv.Atoi(d.GetMetadata()["retry_after"])
			}
		case proto.Message:
			e.Data = d
		}
	}
	if _, ok := Codes[e.Code]; ok {
		return e
	}
	switch st.Code() {
	case codes.Unauthenticated:
		return New("authentication_failed", st.Message())
	case codes.Unimplemented:
		return New("route_not_found", st.Message())
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable:
		return New("unavailable", st.Message())
	default:
		return New("internal_error", "internal error")
	}
}

// FromError is FromStatus for any error: an *Error is returned as is, context ends become
// unavailable, anything else internal_error.
func FromError(err error) *Error {
	if e, ok := As(err); ok {
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return New("unavailable", "request cancelled or timed out")
	}
	if st, ok := status.FromError(err); ok {
		return FromStatus(st)
	}
	return New("internal_error", "internal error")
}

// HTTPStatus is the HTTP status of the error's code.
func (e *Error) HTTPStatus() int {
	if s, ok := Codes[e.Code]; ok {
		return s.Status
	}
	return http.StatusInternalServerError
}
