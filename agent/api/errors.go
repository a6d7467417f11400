package api

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrAgentNotRunning means no agent serves the data directory's socket: the
// socket file is absent or nothing accepts connections on it.
var ErrAgentNotRunning = errors.New("agent not running")

// APIError is an error response of the local API.
type APIError struct {
	Status int // HTTP status
	ErrorDetail
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("agent: %s (HTTP %d)", e.Code, e.Status)
	}
	return e.Message
}

// Error codes carried in ErrorBody; the CLI maps them to exit codes
// (not_found -> 3, bad_request/ambiguous -> 2, anything else -> 1).
const (
	CodeBadRequest  = "bad_request" // 400: malformed request or invalid argument
	CodeNotFound    = "not_found"   // 404: unknown space, record, field or sibling
	CodeAmbiguous   = "ambiguous"   // 409: a name or prefix matches several spaces; message lists them
	CodeConflict    = "conflict"    // 409: e.g. resolve names a sibling that is no longer live
	CodeTooLarge    = "too_large"   // 413: request, value or change over the limit
	CodeForbidden   = "forbidden"   // 403: not allowed for this device (a relay writing, no key for the space)
	CodeUnavailable = "unavailable" // 503: store quarantined or shutting down
	CodeRefused     = "refused"     // 422: a bundle or want file refused whole: damaged, tampered, or signed by a device this one does not trust
	CodeInternal    = "internal"    // 500
)

// ErrorBody is the JSON of every error response (and of the CLI's --json
// errors on stderr).
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names the problem and, where there is one, what to do.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// HTTPStatus is the HTTP status an error response with the code travels
// with; the agent answers with it and the client reads it back
// (CodeForStatus).
func HTTPStatus(code string) int {
	switch code {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeAmbiguous, CodeConflict:
		return http.StatusConflict
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeForbidden:
		return http.StatusForbidden
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeRefused:
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// CodeForStatus is the error code of an error response whose body names
// none (not the agent's answer, e.g. a proxy's), from its HTTP status.
func CodeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	}
	return CodeInternal
}
