package peer

import "errors"

// Sentinel errors returned (wrapped) by the peer package. Test with
// errors.Is.
var (
	// ErrClosed is returned by Answerer.Answer when Answerer.Close came
	// before or during the call.
	ErrClosed = errors.New("peer: answerer closed")
	// ErrStopped is returned by Answerer.Answer when its stop channel closed
	// before the answer was ready. The Answerer stays open.
	ErrStopped = errors.New("peer: answer stopped")
)
