// Package apierr is the error vocabulary of the public API: every error a caller can cause has a
// stable snake_case code, an HTTP status and a gRPC code, all in one table (DESIGN.md §6). The
// gRPC interceptor turns an *Error into a status with an ErrorInfo detail whose reason is the
// code; the HTTP gateway turns that back into the envelope.
package apierr

import (
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Domain is the ErrorInfo domain of every error this gateway returns.
const Domain = "pushgo.dev"

// Kind groups codes by how a caller should react; each kind has one gRPC code.
type Kind int

// Kinds of errors.
const (
	KindInvalid Kind = iota
	KindUnauthenticated
	KindForbidden
	KindNotFound
	KindConflict
	KindUnavailable
	KindInternal
	KindTooLarge
	KindMethod
	// KindLimited is a refusal that waiting cures (a rate limit): 429 over HTTP.
	KindLimited
)

// Spec is one row of the code table.
type Spec struct {
	Kind   Kind
	Status int
}

// Codes is the table of every error_code with its HTTP status. README.md lists the same table;
// a test keeps the two in step.
var Codes = map[string]Spec{
	// Transport (DESIGN.md §6.2 steps 1–3 and routing).
	"authentication_failed":     {KindUnauthenticated, http.StatusUnauthorized},
	"payload_too_large":         {KindTooLarge, http.StatusRequestEntityTooLarge},
	"request_timeout":           {KindInvalid, http.StatusRequestTimeout},
	"missing_json_content_type": {KindInvalid, http.StatusBadRequest},
	"invalid_json_syntax":       {KindInvalid, http.StatusBadRequest},
	"invalid_json_data":         {KindInvalid, http.StatusBadRequest},
	"unknown_field":             {KindInvalid, http.StatusBadRequest},
	"duplicate_field":           {KindInvalid, http.StatusBadRequest},
	"route_not_found":           {KindNotFound, http.StatusNotFound},
	"method_not_allowed":        {KindMethod, http.StatusMethodNotAllowed},
	"internal_error":            {KindInternal, http.StatusInternalServerError},
	"integrity_error":           {KindInternal, http.StatusInternalServerError},

	// Field rules (§6.3).
	"channel_id_required":          {KindInvalid, http.StatusBadRequest},
	"invalid_channel_id":           {KindInvalid, http.StatusBadRequest},
	"password_required":            {KindInvalid, http.StatusBadRequest},
	"invalid_password":             {KindInvalid, http.StatusBadRequest},
	"invalid_op_id":                {KindInvalid, http.StatusBadRequest},
	"invalid_thing_id":             {KindInvalid, http.StatusBadRequest},
	"event_id_forbidden_on_create": {KindInvalid, http.StatusBadRequest},
	"event_id_required":            {KindInvalid, http.StatusBadRequest},
	"invalid_event_id":             {KindInvalid, http.StatusBadRequest},
	"title_required":               {KindInvalid, http.StatusBadRequest},
	"status_required":              {KindInvalid, http.StatusBadRequest},
	"status_too_long":              {KindInvalid, http.StatusBadRequest},
	"message_required":             {KindInvalid, http.StatusBadRequest},
	"message_too_long":             {KindInvalid, http.StatusBadRequest},
	"severity_required":            {KindInvalid, http.StatusBadRequest},
	"invalid_severity":             {KindInvalid, http.StatusBadRequest},
	"event_time_required":          {KindInvalid, http.StatusBadRequest},
	"invalid_event_time":           {KindInvalid, http.StatusBadRequest},
	"invalid_started_at":           {KindInvalid, http.StatusBadRequest},
	"started_at_forbidden":         {KindInvalid, http.StatusBadRequest},
	"invalid_ended_at":             {KindInvalid, http.StatusBadRequest},
	"ended_at_forbidden":           {KindInvalid, http.StatusBadRequest},
	"too_many_tags":                {KindInvalid, http.StatusBadRequest},
	"invalid_tag":                  {KindInvalid, http.StatusBadRequest},
	"too_many_images":              {KindInvalid, http.StatusBadRequest},
	"invalid_image":                {KindInvalid, http.StatusBadRequest},
	"invalid_attrs":                {KindInvalid, http.StatusBadRequest},
	"invalid_metadata":             {KindInvalid, http.StatusBadRequest},
	"channel_name_required":        {KindInvalid, http.StatusBadRequest},
	"invalid_channel_name":         {KindInvalid, http.StatusBadRequest},
	"invalid_event_state":          {KindInvalid, http.StatusBadRequest},
	"invalid_limit":                {KindInvalid, http.StatusBadRequest},
	"invalid_cursor":               {KindInvalid, http.StatusBadRequest},

	// Devices, subscriptions and inboxes (§6.5; PushGo's codes and statuses).
	"device_key_required":                          {KindInvalid, http.StatusBadRequest},
	"invalid_device_key":                           {KindInvalid, http.StatusBadRequest},
	"device_key_not_found":                         {KindInvalid, http.StatusBadRequest},
	"invalid_platform":                             {KindInvalid, http.StatusBadRequest},
	"platform_mismatch":                            {KindInvalid, http.StatusBadRequest},
	"invalid_channel_type":                         {KindInvalid, http.StatusBadRequest},
	"provider_token_required":                      {KindInvalid, http.StatusBadRequest},
	"provider_token_forbidden_for_private_channel": {KindInvalid, http.StatusBadRequest},
	"apns_channel_requires_apple_platform":         {KindInvalid, http.StatusBadRequest},
	"fcm_channel_requires_android_platform":        {KindInvalid, http.StatusBadRequest},
	"invalid_provider_token":                       {KindInvalid, http.StatusBadRequest},
	"invalid_webhook_url":                          {KindInvalid, http.StatusBadRequest},
	"webhook_url_not_allowed":                      {KindInvalid, http.StatusBadRequest},
	"channel_binding_invalid":                      {KindInvalid, http.StatusBadRequest},
	"delivery_id_required":                         {KindInvalid, http.StatusBadRequest},
	"invalid_delivery_id":                          {KindInvalid, http.StatusBadRequest},

	// Live Activities (§10.1).
	"live_activity_requires_ios": {KindInvalid, http.StatusBadRequest},
	"invalid_activity_request":   {KindInvalid, http.StatusBadRequest},
	"invalid_activity_key":       {KindInvalid, http.StatusBadRequest},
	"activity_token_required":    {KindInvalid, http.StatusBadRequest},
	"invalid_activity_token":     {KindInvalid, http.StatusBadRequest},
	"device_not_subscribed":      {KindForbidden, http.StatusForbidden},

	// Channel (§6.2 step 5).
	"channel_not_found": {KindNotFound, http.StatusNotFound},
	"password_mismatch": {KindForbidden, http.StatusForbidden},

	// Lifecycle and idempotency (§3, §4).
	"event_not_found":   {KindNotFound, http.StatusNotFound},
	"event_closed":      {KindConflict, http.StatusConflict},
	"event_exists":      {KindConflict, http.StatusConflict},
	"op_id_conflict":    {KindConflict, http.StatusConflict},
	"thing_id_mismatch": {KindConflict, http.StatusConflict},
	"attrs_too_large":   {KindInvalid, http.StatusBadRequest},

	// Limits and quotas (§8.2).
	"rate_limited":      {KindLimited, http.StatusTooManyRequests},
	"too_many_attempts": {KindLimited, http.StatusTooManyRequests},
	"quota_exceeded":    {KindForbidden, http.StatusForbidden},
	"too_many_streams":  {KindLimited, http.StatusTooManyRequests},
	"busy":              {KindUnavailable, http.StatusServiceUnavailable},

	// Hosted mode (§8.1).
	"tenant_id_required":   {KindInvalid, http.StatusBadRequest},
	"invalid_tenant_id":    {KindInvalid, http.StatusBadRequest},
	"tenant_name_required": {KindInvalid, http.StatusBadRequest},
	"invalid_tenant_name":  {KindInvalid, http.StatusBadRequest},
	"tenant_not_found":     {KindNotFound, http.StatusNotFound},

	// Dispatch and broker (§5).
	"dispatch_partial_failure": {KindUnavailable, http.StatusServiceUnavailable},
	"dispatch_timeout":         {KindUnavailable, http.StatusServiceUnavailable},
	"unavailable":              {KindUnavailable, http.StatusServiceUnavailable},
}

// Error is an API error: a code from Codes, a message for humans and, for the 503 dispatch
// outcomes only, the op's data.
type Error struct {
	Code string
	Msg  string
	// Data is returned as the envelope's data (and as a status detail over gRPC).
	Data proto.Message
	// RetryAfter, when positive, is sent as Retry-After (seconds).
	RetryAfter int
}

// New returns an error with the given code and message. The code must be in Codes; an unknown
// code is a programming error and is reported as internal_error.
func New(code, msg string) *Error {
	if _, ok := Codes[code]; !ok {
		return &Error{Code: "internal_error", Msg: "internal error"}
	}
	return &Error{Code: code, Msg: msg}
}

// Newf is New with a formatted message.
func Newf(code, format string, args ...any) *Error {
	return New(code, fmt.Sprintf(format, args...))
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// GRPCCode is the gRPC code of the error's kind.
func (e *Error) GRPCCode() codes.Code { return KindCode(Codes[e.Code].Kind) }

// KindCode maps a kind to its gRPC code.
func KindCode(k Kind) codes.Code {
	switch k {
	case KindInvalid:
		return codes.InvalidArgument
	case KindUnauthenticated:
		return codes.Unauthenticated
	case KindForbidden:
		return codes.PermissionDenied
	case KindNotFound:
		return codes.NotFound
	case KindConflict:
		return codes.Aborted
	case KindUnavailable:
		return codes.Unavailable
	case KindTooLarge:
		return codes.ResourceExhausted
	case KindMethod:
		return codes.Unimplemented
	case KindLimited:
		return codes.ResourceExhausted
	default:
		return codes.Internal
	}
}

// As returns err as an *Error when it is one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
