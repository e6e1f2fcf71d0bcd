package pipe

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors of the node-to-node pipes and the control channel. Test
// with errors.Is; they are wrapped with context where they are returned.
var (
	// ErrPipesClosed is returned by Pipes methods after Close, and by the
	// control channel (503) while/after the Pipes shut down.
	ErrPipesClosed = errors.New("cluster: pipes closed")
	// ErrPipeInvalid is returned by PipeIn for unusable arguments (empty
	// room or producer id, unknown kind, origin missing or equal to this node).
	ErrPipeInvalid = errors.New("cluster: invalid pipe request")
	// ErrNodeUnresolved is returned when PipesConfig.Resolve does not know
	// how to reach a node's control channel.
	ErrNodeUnresolved = errors.New("cluster: node address unknown")
	// ErrPipeRoomNotFound is returned by PipeIn when the room does not exist
	// locally (pipes only feed rooms that have local participants).
	ErrPipeRoomNotFound = errors.New("cluster: room not found")
	// ErrPipeRejected is returned by PipeIn when the origin refused to send
	// the producer (unknown, closed, or itself piped from a third node). The
	// concrete error is a *RejectedError.
	ErrPipeRejected = errors.New("cluster: pipe rejected by origin")
	// ErrPipeRemoved is returned by a pending PipeIn when the pipe was
	// removed (Unpipe, UnpipeRoom, DropNode) before the origin accepted it.
	ErrPipeRemoved = errors.New("cluster: pipe removed")
	// ErrLinkFailed is returned by a pending PipeIn when its link failed
	// (control request failed, timed out or was refused as stale, the peer
	// closed its side, ICE/DTLS failed).
	ErrLinkFailed = errors.New("cluster: link failed")

	// ErrControlUnauthorized (401): missing, malformed, wrong, expired or
	// replayed request signature.
	ErrControlUnauthorized = errors.New("cluster: control: unauthorized")
	// ErrControlForbidden (403): authenticated, but the sender may not act
	// on the addressed resource (e.g. negotiating another node's link).
	ErrControlForbidden = errors.New("cluster: control: forbidden")
	// ErrControlBadRequest (400): malformed JSON or invalid fields.
	ErrControlBadRequest = errors.New("cluster: control: bad request")
	// ErrControlTooLarge (413): request body over the 1 MiB limit.
	ErrControlTooLarge = errors.New("cluster: control: request body too large")
	// ErrControlNotFound (404): unknown route.
	ErrControlNotFound = errors.New("cluster: control: not found")
	// ErrControlConflict (409): the request names a link or link side the
	// receiver does not have (any more), or a superseded want version: the
	// sender's side of the link is stale and must be closed.
	ErrControlConflict = errors.New("cluster: control: conflict")
	// ErrControlUnavailable (503): the node is shutting down or cannot keep
	// more replay-protection state right now; retry later.
	ErrControlUnavailable = errors.New("cluster: control: unavailable")
	// ErrControlNotImplemented (501): no room event handler is installed.
	ErrControlNotImplemented = errors.New("cluster: control: not implemented")
	// ErrControlBadResponse is returned by the control client when a peer's
	// response is unsigned, wrongly signed, or not the expected JSON.
	ErrControlBadResponse = errors.New("cluster: control: bad response")
)

// RejectedError tells why an origin refused to pipe one producer. It wraps
// ErrPipeRejected.
type RejectedError struct {
	Room       string
	ProducerID string
	Origin     string
	Reason     string // one of the Reject* constants, or free text from a newer peer
}

// Error implements error.
func (e *RejectedError) Error() string {
	return fmt.Sprintf("cluster: pipe %s/%s rejected by %s: %s", e.Room, e.ProducerID, e.Origin, e.Reason)
}

// Unwrap returns ErrPipeRejected.
func (e *RejectedError) Unwrap() error { return ErrPipeRejected }

// Reasons a serving node gives in the rejected lists of the link protocol.
const (
	RejectRoomNotFound    = "room-not-found"    // no such local room on the origin
	RejectNotInRoom       = "not-in-room"       // the puller is not known to have the room open (PipesConfig.MayServe)
	RejectUnknownProducer = "unknown-producer"  // no such producer in the room
	RejectRemoteProducer  = "remote-producer"   // producer is itself piped in: never piped onward (no loops)
	RejectProducerClosed  = "producer-closed"   // producer closed since it was accepted
	RejectConsumerFailed  = "consumer-failed"   // attaching the producer to the link failed
	RejectNoSlot          = "no-slot"           // (answerer) the offer had no free m-line for the producer
	RejectInvalid         = "invalid"           // empty room or producer id
	RejectShuttingDown    = "shutting-down"     // the serving node is closing the link
	RejectNotAccepted     = "not-accepted"      // the serving node listed it neither accepted nor rejected
	RejectLocalRoomClosed = "local-room-closed" // (puller side, logs only) the local room disappeared
)

// ControlError is the error the control client returns for a non-2xx
// response; it wraps the sentinel matching Status (see controlStatus), so
// errors.Is(err, ErrControlUnauthorized) works on the calling side too.
type ControlError struct {
	Node    string // peer node that answered
	Status  int    // HTTP status
	Code    string // machine-readable code from the JSON body
	Message string // human-readable message from the JSON body
}

// Error implements error.
func (e *ControlError) Error() string {
	return fmt.Sprintf("cluster: control: node %s: %d %s: %s", e.Node, e.Status, e.Code, e.Message)
}

// Unwrap returns the sentinel for Status, or nil.
func (e *ControlError) Unwrap() error {
	switch e.Status {
	case http.StatusUnauthorized:
		return ErrControlUnauthorized
	case http.StatusForbidden:
		return ErrControlForbidden
	case http.StatusBadRequest:
		return ErrControlBadRequest
	case http.StatusRequestEntityTooLarge:
		return ErrControlTooLarge
	case http.StatusNotFound:
		return ErrControlNotFound
	case http.StatusConflict:
		return ErrControlConflict
	case http.StatusNotImplemented:
		return ErrControlNotImplemented
	case http.StatusServiceUnavailable:
		return ErrControlUnavailable
	default:
		return nil
	}
}

// controlStatus is THE place mapping errors returned by control handlers
// to HTTP status codes and wire codes (ControlError.Unwrap is its inverse).
// Unknown errors are 500 "internal".
func controlStatus(err error) (int, string) {
	switch {
	case errors.Is(err, ErrControlUnauthorized):
		return http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, ErrControlForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, ErrControlBadRequest):
		return http.StatusBadRequest, "bad-request"
	case errors.Is(err, ErrControlTooLarge):
		return http.StatusRequestEntityTooLarge, "too-large"
	case errors.Is(err, ErrControlNotFound):
		return http.StatusNotFound, "not-found"
	case errors.Is(err, ErrControlConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, ErrControlNotImplemented):
		return http.StatusNotImplemented, "not-implemented"
	case errors.Is(err, ErrControlUnavailable), errors.Is(err, ErrPipesClosed):
		return http.StatusServiceUnavailable, "unavailable"
	default:
		return http.StatusInternalServerError, "internal"
	}
}
